"""remoteRun.inputs_pushed: when exec first pushed a run's inputs (purge age)

Revision ID: resume
Revises: control
"""
from alembic import op
import sqlalchemy as sa


revision = 'resume'
down_revision = 'control'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('remoteRun', schema=None) as batch_op:
        batch_op.add_column(sa.Column('inputs_pushed', sa.DateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('remoteRun', schema=None) as batch_op:
        batch_op.drop_column('inputs_pushed')

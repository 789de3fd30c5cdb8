"""remoteRun.progress (the runner's compact progress as poll last read it) and
remoteComponent.elapsed (measured seconds per command, all phases)

Revision ID: runwire
Revises: resume
"""
from alembic import op
import sqlalchemy as sa


revision = 'runwire'
down_revision = 'resume'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('remoteRun', schema=None) as batch_op:
        batch_op.add_column(sa.Column('progress', sa.Text(), nullable=True))
    with op.batch_alter_table('remoteComponent', schema=None) as batch_op:
        batch_op.add_column(sa.Column('elapsed', sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('remoteComponent', schema=None) as batch_op:
        batch_op.drop_column('elapsed')
    with op.batch_alter_table('remoteRun', schema=None) as batch_op:
        batch_op.drop_column('progress')

"""sitePause: maintenance pauses of a site (control-tool pause / resume)

Revision ID: control
Revises: 0001
"""
from alembic import op
import sqlalchemy as sa


revision = 'control'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('sitePause',
    sa.Column('site', sa.String(length=64), nullable=False),
    sa.Column('default_site', sa.Boolean(), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('paused_by', sa.String(length=128), nullable=False),
    sa.Column('paused_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('site', name=op.f('pk_sitePause'))
    )


def downgrade() -> None:
    op.drop_table('sitePause')

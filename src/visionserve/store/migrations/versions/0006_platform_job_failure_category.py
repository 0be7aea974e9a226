"""jobs: the public failure's category and retryable beside its message and code

Revision ID: 0006_job_failure
Revises: 0005_inspect_models
Create Date: 2026-11-24 10:02:13.418207
"""

import sqlalchemy as sa
from alembic import op

revision = "0006_job_failure"
down_revision = "0005_inspect_models"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("error_category", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("error_retryable", sa.Boolean(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_column("error_retryable")
        batch_op.drop_column("error_category")

"""extract: patterns, jobs and webhooks; jobs.priority (claimed highest first)

Revision ID: 0007_extract
Revises: 0006_job_failure
Create Date: 2026-12-01 02:30:00.000000
"""

import sqlalchemy as sa
from alembic import op

import visionserve.store.records

revision = "0007_extract"
down_revision = "0006_job_failure"
branch_labels = None
depends_on = None

UTC = visionserve.store.records.UTCDateTime


def upgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("priority", sa.Integer(), nullable=False, server_default="0"))

    op.create_table(
        "extract_patterns",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("owner", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("output_format", sa.String(length=8), nullable=False),
        sa.Column("instructions", sa.Text(), nullable=False),
        sa.Column("schema", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("engine", sa.String(length=8), nullable=False),
        sa.Column("webhook_url", sa.Text(), nullable=True),
        sa.Column("metadata", sa.JSON(), nullable=True),
        sa.Column("created_at", UTC(timezone=True), nullable=False),
        sa.Column("updated_at", UTC(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("extract_patterns", schema=None) as batch_op:
        batch_op.create_index(
            "ix_extract_patterns_owner_created", ["owner", "created_at"], unique=False
        )

    op.create_table(
        "extract_jobs",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("owner", sa.String(length=64), nullable=False),
        sa.Column("pattern_id", sa.String(length=32), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("priority", sa.String(length=8), nullable=False),
        sa.Column("units", sa.Integer(), nullable=False),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("metadata", sa.JSON(), nullable=True),
        sa.Column("input_key", sa.String(length=300), nullable=False),
        sa.Column("input_url", sa.Text(), nullable=True),
        sa.Column("page_count", sa.Integer(), nullable=False),
        sa.Column("result", sa.JSON(), nullable=True),
        sa.Column("field_metadata", sa.JSON(), nullable=True),
        sa.Column("confidence", sa.Float(), nullable=True),
        sa.Column("engine_used", sa.String(length=8), nullable=True),
        sa.Column("processing_time_ms", sa.Integer(), nullable=True),
        sa.Column("error_code", sa.String(length=64), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("created_at", UTC(timezone=True), nullable=False),
        sa.Column("started_at", UTC(timezone=True), nullable=True),
        sa.Column("finished_at", UTC(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("extract_jobs", schema=None) as batch_op:
        batch_op.create_index("ix_extract_jobs_owner_created", ["owner", "created_at"])
        batch_op.create_index("ix_extract_jobs_pattern_status", ["pattern_id", "status"])

    op.create_table(
        "extract_webhooks",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("owner", sa.String(length=64), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("events", sa.JSON(), nullable=False),
        sa.Column("secret", sa.Text(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", UTC(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("extract_webhooks", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_extract_webhooks_owner"), ["owner"], unique=False)


def downgrade() -> None:
    op.drop_table("extract_webhooks")
    op.drop_table("extract_jobs")
    op.drop_table("extract_patterns")
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_column("priority")

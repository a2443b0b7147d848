"""test history: the finished tests of stored sources (table test_record)

Rows are written by the API's recorder (api/history.py) from the jobs' final records,
which hold no configuration; each is deleted with its source (ON DELETE CASCADE).

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlmodel.sql.sqltypes import AutoString

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

String = AutoString
Timestamp = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "test_record",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("organization_id", String(), nullable=False),
        sa.Column("source_id", String(), nullable=False),
        sa.Column("job_id", String(), nullable=False),
        sa.Column("source_definition_id", String(), nullable=False),
        sa.Column("status", String(), nullable=False),
        sa.Column("failure_type", String(), nullable=True),
        sa.Column("message", String(), nullable=True),
        sa.Column("hint", String(), nullable=True),
        sa.Column("retryable", sa.Boolean(), nullable=True),
        sa.Column("fields", sa.JSON(), nullable=True),
        sa.Column("warnings", sa.JSON(), nullable=False),
        sa.Column("steps", sa.JSON(), nullable=False),
        sa.Column("worker", String(), nullable=True),
        sa.Column("started_at", Timestamp, nullable=True),
        sa.Column("ended_at", Timestamp, nullable=False),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.Column("status_changed", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(["organization_id"], ["organization.id"]),
        sa.ForeignKeyConstraint(["source_id"], ["source.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("job_id"),
    )
    op.create_index("ix_test_record_ended_at", "test_record", ["ended_at"], unique=False)
    op.create_index("ix_test_record_organization_id", "test_record", ["organization_id"], unique=False)
    op.create_index("ix_test_record_source_newest", "test_record", ["source_id", "ended_at", "id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_test_record_source_newest", table_name="test_record")
    op.drop_index("ix_test_record_organization_id", table_name="test_record")
    op.drop_index("ix_test_record_ended_at", table_name="test_record")
    op.drop_table("test_record")

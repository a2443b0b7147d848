"""webhooks: endpoints, the events sent to them, and every delivery attempt

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlmodel.sql.sqltypes import AutoString

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

String = AutoString
Timestamp = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "webhook",
        sa.Column("id", String(), nullable=False),
        sa.Column("organization_id", String(), nullable=False),
        sa.Column("url", String(), nullable=False),
        sa.Column("secret_encrypted", String(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.ForeignKeyConstraint(["organization_id"], ["organization.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_webhook_organization_id", "webhook", ["organization_id"], unique=False)
    op.create_table(
        "webhook_event",
        sa.Column("id", String(), nullable=False),
        sa.Column("organization_id", String(), nullable=False),
        sa.Column("source_id", String(), nullable=False),
        sa.Column("type", String(), nullable=False),
        sa.Column("payload", String(), nullable=False),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.ForeignKeyConstraint(["organization_id"], ["organization.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_webhook_event_organization_id", "webhook_event", ["organization_id"], unique=False)
    op.create_table(
        "webhook_delivery",
        sa.Column("id", String(), nullable=False),
        sa.Column("webhook_id", String(), nullable=False),
        sa.Column("event_id", String(), nullable=False),
        sa.Column("source_id", String(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("state", String(), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("error", String(), nullable=True),
        sa.Column("response_excerpt", String(), nullable=True),
        sa.Column("duration_ms", sa.Float(), nullable=True),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.Column("next_attempt_at", Timestamp, nullable=False),
        sa.Column("claimed_until", Timestamp, nullable=True),
        sa.Column("sent_at", Timestamp, nullable=True),
        sa.ForeignKeyConstraint(["webhook_id"], ["webhook.id"]),
        sa.ForeignKeyConstraint(["event_id"], ["webhook_event.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    for column in ("webhook_id", "event_id", "state", "next_attempt_at"):
        op.create_index(f"ix_webhook_delivery_{column}", "webhook_delivery", [column], unique=False)


def downgrade() -> None:
    for column in ("webhook_id", "event_id", "state", "next_attempt_at"):
        op.drop_index(f"ix_webhook_delivery_{column}", table_name="webhook_delivery")
    op.drop_table("webhook_delivery")
    op.drop_index("ix_webhook_event_organization_id", table_name="webhook_event")
    op.drop_table("webhook_event")
    op.drop_index("ix_webhook_organization_id", table_name="webhook")
    op.drop_table("webhook")

"""initial: organizations, API keys, workspaces, sources

The tables exactly as ``SQLModel.metadata.create_all`` made them before there were
migrations (a database made that way is adopted at this revision by ``sourcecheck db
upgrade``). ``tests/api/test_migrations.py`` checks that head matches api/models.py.

Revision ID: 0001
Revises:
Create Date: 2026-11-26
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlmodel.sql.sqltypes import AutoString

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# AutoString: VARCHAR (VARCHAR(255) on MySQL/MariaDB, which need a length), as the models.
String = AutoString
# The models' datetimes (sqlmodel's UTCDateTime): timezone-aware timestamps.
Timestamp = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "organization",
        sa.Column("id", String(), nullable=False),
        sa.Column("name", String(), nullable=False),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "apikey",
        sa.Column("id", String(), nullable=False),
        sa.Column("organization_id", String(), nullable=False),
        sa.Column("token_hash", String(), nullable=False),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.Column("revoked_at", Timestamp, nullable=True),
        sa.ForeignKeyConstraint(["organization_id"], ["organization.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_apikey_organization_id", "apikey", ["organization_id"], unique=False)
    op.create_table(
        "workspace",
        sa.Column("id", String(), nullable=False),
        sa.Column("organization_id", String(), nullable=False),
        sa.Column("name", String(), nullable=False),
        sa.Column("is_default", sa.Boolean(), nullable=False),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.ForeignKeyConstraint(["organization_id"], ["organization.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_workspace_organization_id", "workspace", ["organization_id"], unique=False)
    op.create_table(
        "source",
        sa.Column("id", String(), nullable=False),
        sa.Column("organization_id", String(), nullable=False),
        sa.Column("workspace_id", String(), nullable=False),
        sa.Column("source_definition_id", String(), nullable=False),
        sa.Column("name", String(), nullable=False),
        sa.Column("configuration_encrypted", String(), nullable=False),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.Column("updated_at", Timestamp, nullable=False),
        sa.ForeignKeyConstraint(["organization_id"], ["organization.id"]),
        sa.ForeignKeyConstraint(["workspace_id"], ["workspace.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_source_organization_id", "source", ["organization_id"], unique=False)
    op.create_index("ix_source_workspace_id", "source", ["workspace_id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_source_workspace_id", table_name="source")
    op.drop_index("ix_source_organization_id", table_name="source")
    op.drop_table("source")
    op.drop_index("ix_workspace_organization_id", table_name="workspace")
    op.drop_table("workspace")
    op.drop_index("ix_apikey_organization_id", table_name="apikey")
    op.drop_table("apikey")
    op.drop_table("organization")

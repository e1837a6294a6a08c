"""dashboard display data: telemetry minute summaries and evidence images

Revision ID: 0002_dashboard
Revises: 0001
Create Date: 2026-11-21 09:50:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002_dashboard"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "telemetry_minutes",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("site_id", sa.String(length=64), nullable=False),
        sa.Column("device_id", sa.String(length=128), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("building", sa.String(length=64), nullable=True),
        sa.Column("ts", sa.Float(), nullable=False),
        sa.Column("hour", sa.Integer(), nullable=False),
        sa.Column("samples", sa.Integer(), nullable=False),
        sa.Column("mean", sa.JSON(), nullable=False),
        sa.Column("max", sa.JSON(), nullable=False),
        sa.Column("power_kw", sa.Float(), nullable=True),
        sa.Column("received_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("site_id", "device_id", "ts", name="uq_telemetry_minutes_device_ts"),
    )
    with op.batch_alter_table("telemetry_minutes", schema=None) as batch_op:
        batch_op.create_index("ix_telemetry_minutes_site_ts", ["site_id", "ts"], unique=False)
        batch_op.create_index(
            "ix_telemetry_minutes_power",
            ["site_id", "hour", "building", "device_id", "power_kw"], unique=False,
            sqlite_where=sa.text("power_kw IS NOT NULL"),
            postgresql_where=sa.text("power_kw IS NOT NULL"),
        )

    op.create_table(
        "evidence_images",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("site_id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("content_type", sa.String(length=32), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("received_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("site_id", "name", name="uq_evidence_images_site_name"),
    )


def downgrade() -> None:
    op.drop_table("evidence_images")
    with op.batch_alter_table("telemetry_minutes", schema=None) as batch_op:
        batch_op.drop_index("ix_telemetry_minutes_power")
        batch_op.drop_index("ix_telemetry_minutes_site_ts")
    op.drop_table("telemetry_minutes")

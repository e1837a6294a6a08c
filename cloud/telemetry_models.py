"""Tables of the dashboard's display data: per-device minute summaries and evidence images.

Both live on the cloud's shared ``Base`` so that Alembic (``cloud/migrations``) and the
model/migration comparison see them. They are display data, not the authoritative
telemetry (that is the TSDB): minute summaries are pruned after a retention period, so the
table stays bounded whatever the estate sends.

Evidence images are kept in the database rather than on a worker's disk, so that every
stateless worker behind a load balancer can serve every image.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, Float, Index, Integer, LargeBinary, String, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from cloud.models import Base


class TelemetryMinute(Base):
    """One device's readings over one minute: mean and max per field, and the sample count.

    ``power_kw`` repeats the mean of the ``power_kw`` field (smart meters) in a column of its
    own so the energy page aggregates in SQL on SQLite and PostgreSQL alike, from a partial
    covering index of the meters' rows only.
    """

    __tablename__ = "telemetry_minutes"
    __table_args__ = (
        UniqueConstraint("site_id", "device_id", "ts", name="uq_telemetry_minutes_device_ts"),
        Index("ix_telemetry_minutes_site_ts", "site_id", "ts"),
        Index("ix_telemetry_minutes_power", "site_id", "hour", "building", "device_id",
              "power_kw", sqlite_where=text("power_kw IS NOT NULL"),
              postgresql_where=text("power_kw IS NOT NULL")),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    site_id: Mapped[str] = mapped_column(String(64))
    device_id: Mapped[str] = mapped_column(String(128))
    kind: Mapped[str] = mapped_column(String(32))
    building: Mapped[str | None] = mapped_column(String(64), default=None)
    ts: Mapped[float] = mapped_column(Float)
    """Start of the minute, epoch seconds (a multiple of 60)."""
    hour: Mapped[int] = mapped_column(Integer)
    """``ts // 3600``: the hour bucket the energy page groups by (portable SQL, no floor())."""
    samples: Mapped[int] = mapped_column(Integer, default=1)
    mean: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    max: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    power_kw: Mapped[float | None] = mapped_column(Float, default=None)
    received_at: Mapped[float] = mapped_column(Float)


class EvidenceImage(Base):
    """A JPEG a gateway uploaded as evidence of an event (faces already blurred on site)."""

    __tablename__ = "evidence_images"
    __table_args__ = (UniqueConstraint("site_id", "name", name="uq_evidence_images_site_name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    site_id: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(200))
    """The snapshot reference the event's ``evidence.snapshot`` carries."""
    content_type: Mapped[str] = mapped_column(String(32))
    data: Mapped[bytes] = mapped_column(LargeBinary)
    size: Mapped[int] = mapped_column(Integer)
    received_at: Mapped[float] = mapped_column(Float)

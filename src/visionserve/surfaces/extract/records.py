"""extract's tables: patterns, extraction jobs and registered webhooks."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, Float, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from visionserve.store.records import Base, utcnow


class ExtractPattern(Base):
    """A pattern: instructions + a validated schema, owned by the key that made it."""

    __tablename__ = "extract_patterns"
    __table_args__ = (Index("ix_extract_patterns_owner_created", "owner", "created_at"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)  # pat_...
    owner: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(200))
    output_format: Mapped[str] = mapped_column(String(8), default="json")
    instructions: Mapped[str] = mapped_column(Text, default="")
    # The schema as the client wrote it (compact or JSON Schema), validated at the edge.
    schema_raw: Mapped[Any] = mapped_column("schema", JSON)
    status: Mapped[str] = mapped_column(String(16), default="active")
    engine: Mapped[str] = mapped_column(String(8), default="auto")
    webhook_url: Mapped[str | None] = mapped_column(Text, default=None)
    meta: Mapped[dict[str, Any] | None] = mapped_column("metadata", JSON, default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class ExtractJob(Base):
    """One ingest: its input, the pattern as it was then, and the outcome.

    ``id`` is the platform job's id (the queue row that runs it).
    """

    __tablename__ = "extract_jobs"
    __table_args__ = (
        Index("ix_extract_jobs_owner_created", "owner", "created_at"),
        Index("ix_extract_jobs_pattern_status", "pattern_id", "status"),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    owner: Mapped[str] = mapped_column(String(64))
    pattern_id: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16), default="queued")
    priority: Mapped[str] = mapped_column(String(8), default="normal")
    # Usage units: one per page, twice that at high priority.
    units: Mapped[int] = mapped_column(Integer, default=1)
    # The pattern's schema, instructions, output format, engine and webhook at ingest.
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    meta: Mapped[dict[str, Any] | None] = mapped_column("metadata", JSON, default=None)
    input_key: Mapped[str] = mapped_column(String(300))
    input_url: Mapped[str | None] = mapped_column(Text, default=None)
    page_count: Mapped[int] = mapped_column(Integer, default=1)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    field_metadata: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    confidence: Mapped[float | None] = mapped_column(Float, default=None)
    engine_used: Mapped[str | None] = mapped_column(String(8), default=None)
    processing_time_ms: Mapped[int | None] = mapped_column(Integer, default=None)
    error_code: Mapped[str | None] = mapped_column(String(64), default=None)
    error_message: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(default=None)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)


class ExtractWebhook(Base):
    """A registered webhook: every job of its owner, for the events it asked for."""

    __tablename__ = "extract_webhooks"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)  # wh_...
    owner: Mapped[str] = mapped_column(String(64), index=True)
    url: Mapped[str] = mapped_column(Text)
    events: Mapped[list[str]] = mapped_column(JSON)
    secret: Mapped[str] = mapped_column(Text)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

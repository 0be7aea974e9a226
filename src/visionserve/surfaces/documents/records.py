"""documents' tables: parse tasks and monthly page usage."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from visionserve.store.records import Base, new_id, utcnow


class DocumentTask(Base):
    """A chunkr-style parse task; its output JSON lives in the blob store."""

    __tablename__ = "document_tasks"
    __table_args__ = (Index("ix_document_tasks_owner_created", "owner", "created_at"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True, default=new_id)
    owner: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default="Starting")
    message: Mapped[str] = mapped_column(Text, default="Task queued")
    configuration: Mapped[dict[str, Any]] = mapped_column(default=dict)
    file_name: Mapped[str | None] = mapped_column(String(500), default=None)
    input_key: Mapped[str] = mapped_column(String(300))
    input_url: Mapped[str | None] = mapped_column(Text, default=None)
    output_key: Mapped[str | None] = mapped_column(String(300), default=None)
    page_count: Mapped[int | None] = mapped_column(Integer, default=None)
    job_id: Mapped[str | None] = mapped_column(String(64), default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(default=None)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)
    expires_at: Mapped[datetime | None] = mapped_column(default=None, index=True)


class DocumentUsage(Base):
    """Pages parsed per key per calendar month (for /usage/monthly and its limit)."""

    __tablename__ = "document_usage"

    owner: Mapped[str] = mapped_column(String(64), primary_key=True)
    month: Mapped[str] = mapped_column(String(7), primary_key=True)  # YYYY-MM
    pages: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

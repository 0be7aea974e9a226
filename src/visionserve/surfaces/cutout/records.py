"""cutout's tables: finished runs and the users' selections."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from visionserve.store.records import Base, new_id, utcnow


class CutoutRun(Base):
    """A finished cutout request: which models ran and how each did (no pixels)."""

    __tablename__ = "cutout_runs"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # the job_id
    kind: Mapped[str] = mapped_column(String(16))  # shotgun | process | upscale
    owner: Mapped[str] = mapped_column(String(64), index=True)
    image_category: Mapped[str | None] = mapped_column(String(64), default=None)
    # model_id -> "success" | "error"
    outcomes: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)


class CutoutSelection(Base):
    """Which model's result a user picked for a run (preference tracking)."""

    __tablename__ = "cutout_selections"

    id: Mapped[str] = mapped_column(String(64), primary_key=True, default=new_id)
    run_id: Mapped[str] = mapped_column(
        ForeignKey("cutout_runs.id", ondelete="CASCADE"), index=True
    )
    selected_model_id: Mapped[str] = mapped_column(String(64))
    image_category: Mapped[str | None] = mapped_column(String(64), default=None, index=True)
    notes: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

"""inspect's tables: projects, media, snapshots, sources, sinks, models, pipelines."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Float, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from visionserve.store.records import Base, new_id, utcnow


class InspectProject(Base):
    """An anomaly detection project (inspect surface)."""

    __tablename__ = "inspect_projects"

    id: Mapped[str] = mapped_column(String(64), primary_key=True, default=new_id)
    # Unique: the contract's 409 "resource already exists" for a second project of a name.
    name: Mapped[str] = mapped_column(String(200), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class InspectMedia(Base):
    """One labelled image of a project; the pixels and thumbnail live in the blob store."""

    __tablename__ = "inspect_media"
    __table_args__ = (Index("ix_inspect_media_project_label", "project_id", "label"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True, default=new_id)
    project_id: Mapped[str] = mapped_column(
        ForeignKey("inspect_projects.id", ondelete="CASCADE"), index=True
    )
    filename: Mapped[str] = mapped_column(String(500))
    label: Mapped[str] = mapped_column(String(16))  # normal | anomalous
    content_type: Mapped[str] = mapped_column(String(64))
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    image_key: Mapped[str] = mapped_column(String(300))
    thumbnail_key: Mapped[str] = mapped_column(String(300))
    # Ground-truth defect mask of an anomalous image (white = defect), for pixel AUROC.
    mask_key: Mapped[str | None] = mapped_column(String(300), default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)


class InspectSnapshot(Base):
    """A frozen list of a project's media ids, e.g. a training set."""

    __tablename__ = "inspect_snapshots"
    __table_args__ = (Index("ux_inspect_snapshots_name", "project_id", "name", unique=True),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True, default=new_id)
    project_id: Mapped[str] = mapped_column(
        ForeignKey("inspect_projects.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(200))
    media_ids: Mapped[list[str]] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class InspectSource(Base):
    """Where a live pipeline reads frames: webcam, IP camera or video file."""

    __tablename__ = "inspect_sources"
    __table_args__ = (Index("ux_inspect_sources_name", "project_id", "name", unique=True),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True, default=new_id)
    project_id: Mapped[str] = mapped_column(
        ForeignKey("inspect_projects.id", ondelete="CASCADE"), index=True
    )
    type: Mapped[str] = mapped_column(String(32))
    name: Mapped[str] = mapped_column(String(200))
    config: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class InspectSink(Base):
    """Where a live pipeline sends results: webhook, MQTT or filesystem."""

    __tablename__ = "inspect_sinks"
    __table_args__ = (Index("ux_inspect_sinks_name", "project_id", "name", unique=True),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True, default=new_id)
    project_id: Mapped[str] = mapped_column(
        ForeignKey("inspect_projects.id", ondelete="CASCADE"), index=True
    )
    type: Mapped[str] = mapped_column(String(32))
    name: Mapped[str] = mapped_column(String(200))
    config: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class InspectModel(Base):
    """A trained (or training) anomaly model; its exports live in the blob store."""

    __tablename__ = "inspect_models"

    id: Mapped[str] = mapped_column(String(64), primary_key=True, default=new_id)
    project_id: Mapped[str] = mapped_column(
        ForeignKey("inspect_projects.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(200))
    architecture: Mapped[str] = mapped_column(String(32))
    parameters: Mapped[dict[str, Any]] = mapped_column(default=dict)
    status: Mapped[str] = mapped_column(String(16), default="training")  # ready | failed
    metrics: Mapped[dict[str, Any]] = mapped_column(default=dict)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    snapshot_id: Mapped[str | None] = mapped_column(String(64), default=None)
    job_id: Mapped[str | None] = mapped_column(String(64), default=None)
    # Blob prefix holding openvino/, onnx/ and pytorch/ exports.
    blob_prefix: Mapped[str] = mapped_column(String(300))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class InspectJob(Base):
    """Which project a durable job belongs to, and its contract type (training, export)."""

    __tablename__ = "inspect_jobs"

    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    project_id: Mapped[str] = mapped_column(
        ForeignKey("inspect_projects.id", ondelete="CASCADE"), index=True
    )
    type: Mapped[str] = mapped_column(String(16))


class InspectPipeline(Base):
    """A saved model + source + sink combination; started as an active pipeline."""

    __tablename__ = "inspect_pipelines"
    __table_args__ = (Index("ux_inspect_pipelines_name", "project_id", "name", unique=True),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True, default=new_id)
    project_id: Mapped[str] = mapped_column(
        ForeignKey("inspect_projects.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(200))
    # SET NULL: deleting a part of a stopped pipeline leaves it unstartable, not gone.
    model_id: Mapped[str | None] = mapped_column(
        ForeignKey("inspect_models.id", ondelete="SET NULL"), default=None
    )
    source_id: Mapped[str | None] = mapped_column(
        ForeignKey("inspect_sources.id", ondelete="SET NULL"), default=None
    )
    sink_id: Mapped[str | None] = mapped_column(
        ForeignKey("inspect_sinks.id", ondelete="SET NULL"), default=None
    )
    config: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class InspectActivePipeline(Base):
    """One run of a pipeline; the loop itself is a Ray actor named after this id."""

    __tablename__ = "inspect_active_pipelines"

    id: Mapped[str] = mapped_column(String(64), primary_key=True, default=new_id)
    pipeline_id: Mapped[str] = mapped_column(
        ForeignKey("inspect_pipelines.id", ondelete="CASCADE"), index=True
    )
    project_id: Mapped[str] = mapped_column(String(64), index=True)
    # starting | running | stopped | error; "live" rows (starting, running) own the actor.
    status: Mapped[str] = mapped_column(String(16), default="starting")
    error: Mapped[str | None] = mapped_column(Text, default=None)
    metrics: Mapped[dict[str, Any]] = mapped_column(default=dict)
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    stopped_at: Mapped[datetime | None] = mapped_column(default=None)


class InspectCapture(Base):
    """A frame stored from an active pipeline, with its anomaly score."""

    __tablename__ = "inspect_captures"

    id: Mapped[str] = mapped_column(String(64), primary_key=True, default=new_id)
    project_id: Mapped[str] = mapped_column(
        ForeignKey("inspect_projects.id", ondelete="CASCADE"), index=True
    )
    active_pipeline_id: Mapped[str] = mapped_column(String(64))
    score: Mapped[float | None] = mapped_column(Float, default=None)
    image_key: Mapped[str] = mapped_column(String(300))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

"""inspect pipelines: saved model + source + sink combinations and their live runs.

An active pipeline is a database row plus a detached Ray actor (``PipelineHost``)
that runs the frame loop. The row is the durable truth (status, error, last
metrics); the actor reports live figures, and when it ends (end of a file, a camera
that cannot be opened) its final state is written back to the row.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session

from visionserve.errors import (
    Conflict,
    NotFound,
    ServiceUnavailable,
    VisionServeError,
    public_failure,
    remote_cause,
)
from visionserve.platform.logging import request_ref
from visionserve.settings import Settings
from visionserve.store.blobs import BlobStore
from visionserve.store.db import session_scope
from visionserve.store.records import new_id, utcnow
from visionserve.surfaces.inspect import schemas as i
from visionserve.surfaces.inspect.confinement import IoPolicy
from visionserve.surfaces.inspect.live.config import parse_config
from visionserve.surfaces.inspect.records import (
    InspectActivePipeline,
    InspectCapture,
    InspectModel,
    InspectPipeline,
    InspectSink,
    InspectSource,
)
from visionserve.surfaces.inspect.service import (
    project_prefix,
    project_rows,
    refuse_taken_name,
    require_project,
)

log = logging.getLogger(__name__)

LIVE = ("starting", "running")
#: Score from which a frame is anomalous: anomalib normalises its scores around 0.5.
DEFAULT_THRESHOLD = 0.5


# The name under which the ingress injects its PipelineHost into ``AppContext.runtime``.
PIPELINE_HOST = "inspect.pipelines"


class PipelineHost(Protocol):
    """Where active pipelines run (Ray actors in a cluster)."""

    async def start(self, active_id: str, spec: dict[str, Any]) -> None: ...

    async def status(self, active_id: str) -> dict[str, Any] | None: ...

    async def stop(self, active_id: str) -> dict[str, Any] | None: ...

    async def capture(self, active_id: str) -> dict[str, Any] | None: ...

    async def offer(self, active_id: str, sdp: str) -> str: ...

    async def candidate(
        self, active_id: str, candidate: str, sdp_mid: str | None, sdp_mline_index: int | None
    ) -> None: ...


class NoPipelineHost:
    """Outside a Ray cluster: nothing runs, so nothing can be started or reached."""

    async def start(self, active_id: str, spec: dict[str, Any]) -> None:
        raise ServiceUnavailable("Live pipelines need the cluster's anomaly deployment")

    async def status(self, active_id: str) -> dict[str, Any] | None:
        return None

    async def stop(self, active_id: str) -> dict[str, Any] | None:
        return None

    async def capture(self, active_id: str) -> dict[str, Any] | None:
        return None

    async def offer(self, active_id: str, sdp: str) -> str:
        raise Conflict(f"Active pipeline {active_id} is not running")

    async def candidate(
        self, active_id: str, candidate: str, sdp_mid: str | None, sdp_mline_index: int | None
    ) -> None:
        raise Conflict(f"Active pipeline {active_id} is not running")


def refuse_if_running(s: Session, column: str, part_id: str, what: str) -> None:
    """409 while a running pipeline uses the model, source or sink ``part_id``.

    Args:
        column: The pipeline's reference to it: ``model_id``, ``source_id`` or ``sink_id``.
    """
    active = s.scalar(
        select(InspectActivePipeline.id)
        .join(InspectPipeline, InspectPipeline.id == InspectActivePipeline.pipeline_id)
        .where(getattr(InspectPipeline, column) == part_id, InspectActivePipeline.status.in_(LIVE))
    )
    if active is not None:
        raise Conflict(
            f"{what.capitalize()} {part_id} is used by running pipeline {active}; stop it first"
        )


def capture_url(capture_id: str) -> str:
    return f"/captures/{capture_id}.png"


@dataclass
class PipelineService:
    settings: Settings
    blobs: BlobStore

    # --- saved pipelines -------------------------------------------------------------

    def _pipeline(self, s: Session, pipeline_id: str) -> InspectPipeline:
        pipeline = s.get(InspectPipeline, pipeline_id)
        if pipeline is None:
            raise NotFound(f"Pipeline {pipeline_id} not found")
        return pipeline

    def _check_parts(
        self,
        s: Session,
        project_id: str,
        model_id: str | None,
        source_id: str | None,
        sink_id: str | None,
    ) -> None:
        """Referenced parts must exist in the same project (404 names the missing one)."""
        parts: tuple[tuple[Any, str, str | None], ...] = (
            (InspectModel, "model", model_id),
            (InspectSource, "source", source_id),
            (InspectSink, "sink", sink_id),
        )
        for record, what, ref in parts:
            if ref is None:
                continue
            row = s.get(record, ref)
            if row is None or row.project_id != project_id:
                raise NotFound(f"{what.capitalize()} {ref} not found in project {project_id}")

    def _running(self, s: Session, pipeline_id: str) -> str | None:
        return s.scalar(
            select(InspectActivePipeline.id).where(
                InspectActivePipeline.pipeline_id == pipeline_id,
                InspectActivePipeline.status.in_(LIVE),
            )
        )

    def list_pipelines(self, project_id: str) -> list[i.Pipeline]:
        with session_scope(self.settings.database_url) as s:
            return [_pipeline_out(p) for p in project_rows(s, InspectPipeline, project_id)]

    def create_pipeline(self, project_id: str, body: i.PipelineCreate) -> i.Pipeline:
        with session_scope(self.settings.database_url) as s:
            require_project(s, project_id)
            self._check_parts(s, project_id, body.model_id, body.source_id, body.sink_id)
            refuse_taken_name(s, InspectPipeline, project_id, body.name, "pipeline")
            now = utcnow()
            pipeline = InspectPipeline(
                id=new_id(),
                project_id=project_id,
                name=body.name,
                model_id=body.model_id,
                source_id=body.source_id,
                sink_id=body.sink_id,
                config=body.config.model_dump(mode="json"),
                created_at=now,
                updated_at=now,
            )
            s.add(pipeline)
            s.flush()
            return _pipeline_out(pipeline)

    def get_pipeline(self, pipeline_id: str) -> i.Pipeline:
        with session_scope(self.settings.database_url) as s:
            return _pipeline_out(self._pipeline(s, pipeline_id))

    def update_pipeline(self, pipeline_id: str, body: i.PipelineUpdate) -> i.Pipeline:
        """Change a stopped pipeline; 409 while it runs (stop, change, start again)."""
        with session_scope(self.settings.database_url) as s:
            pipeline = self._pipeline(s, pipeline_id)
            if (active := self._running(s, pipeline_id)) is not None:
                raise Conflict(f"Pipeline {pipeline_id} is running as {active}; stop it first")
            changes = body.model_dump(exclude_unset=True)
            if changes.get("name") is None:  # null: unchanged (a name is required)
                changes.pop("name", None)
            self._check_parts(
                s,
                pipeline.project_id,
                changes.get("model_id"),
                changes.get("source_id"),
                changes.get("sink_id"),
            )
            if "name" in changes:
                refuse_taken_name(
                    s,
                    InspectPipeline,
                    pipeline.project_id,
                    changes["name"],
                    "pipeline",
                    pipeline.id,
                )
            for field in ("name", "model_id", "source_id", "sink_id"):
                if field in changes:
                    setattr(pipeline, field, changes[field])
            if body.config is not None:
                pipeline.config = body.config.model_dump(mode="json")
            pipeline.updated_at = utcnow()
            s.flush()
            return _pipeline_out(pipeline)

    def delete_pipeline(self, pipeline_id: str) -> None:
        with session_scope(self.settings.database_url) as s:
            pipeline = self._pipeline(s, pipeline_id)
            if (active := self._running(s, pipeline_id)) is not None:
                raise Conflict(f"Pipeline {pipeline_id} is running as {active}; stop it first")
            s.delete(pipeline)

    def guard_part_delete(self, column: str, part_id: str, what: str) -> None:
        """409 when a running pipeline uses the source/sink about to be deleted."""
        with session_scope(self.settings.database_url) as s:
            refuse_if_running(s, column, part_id, what)

    # --- active pipelines ------------------------------------------------------------

    def _launch_spec(self, pipeline_id: str) -> tuple[str, dict[str, Any]]:
        """Insert the ``starting`` row and return it with what the actor needs."""
        with session_scope(self.settings.database_url) as s:
            pipeline = self._pipeline(s, pipeline_id)
            if (active := self._running(s, pipeline_id)) is not None:
                raise Conflict(f"Pipeline {pipeline_id} is already running as {active}")
            missing = [
                what
                for what, ref in (("model", pipeline.model_id), ("source", pipeline.source_id))
                if ref is None
            ]
            if missing:
                raise Conflict(f"Pipeline {pipeline_id} has no {' or '.join(missing)}; set one")
            model = s.get(InspectModel, pipeline.model_id)
            if model is None or model.status != "ready":
                state = "missing" if model is None else model.status
                raise Conflict(f"Model {pipeline.model_id} is {state}; only a ready model runs")
            source = s.get(InspectSource, pipeline.source_id)
            sink = s.get(InspectSink, pipeline.sink_id) if pipeline.sink_id else None
            # Checked again, not only at creation: roots, symlinks and DNS answers change.
            # The actor checks once more where it opens and connects.
            policy = IoPolicy.from_settings(self.settings)
            if source is not None:
                source_model = i.SOURCE_CONFIGS[source.type]
                policy.check_source(parse_config(source_model, source.config, "source"))
            if sink is not None:
                policy.check_sink(parse_config(i.SINK_CONFIGS[sink.type], sink.config, "sink"))
            active_row = InspectActivePipeline(
                id=new_id(),
                pipeline_id=pipeline_id,
                project_id=pipeline.project_id,
                status="starting",
                metrics={},
                started_at=utcnow(),
            )
            s.add(active_row)
            s.flush()
            config = pipeline.config or {}
            threshold = config.get("threshold")
            return active_row.id, {
                "active_id": active_row.id,
                "pipeline_id": pipeline_id,
                "model_id": pipeline.model_id,
                "source": {"type": source.type, "config": source.config} if source else None,
                "sink": {"type": sink.type, "config": sink.config} if sink else None,
                "threshold": DEFAULT_THRESHOLD if threshold is None else threshold,
                "fps": config.get("fps"),
                "emit": config.get("emit", "anomalies"),
            }

    async def start(self, host: PipelineHost, body: i.ActivePipelineStart) -> i.ActivePipeline:
        active_id, spec = await asyncio.to_thread(self._launch_spec, body.pipeline_id)
        try:
            await host.start(active_id, spec)
        except Exception as exc:
            # The stored error and the answer are the public face; the log has the rest.
            ref = request_ref(f"active pipeline {active_id}")
            failure = public_failure(exc, ref=ref, logger=log)
            log.warning("could not start active pipeline %s: %s", active_id, failure.code)
            await asyncio.to_thread(self._settle, active_id, "error", failure.message, None)
            if isinstance(exc, VisionServeError):
                raise
            cause = remote_cause(exc)
            if isinstance(cause, VisionServeError):  # raised in the actor, wrapped by Ray
                raise cause from exc
            raise ServiceUnavailable(f"Could not start the pipeline: {failure.message}") from exc
        return await asyncio.to_thread(self._active_out, active_id)

    async def list_active(self, host: PipelineHost) -> list[i.ActivePipeline]:
        with session_scope(self.settings.database_url) as s:
            ids = s.scalars(
                select(InspectActivePipeline.id)
                .where(InspectActivePipeline.status.in_(LIVE))
                .order_by(InspectActivePipeline.started_at)
            ).all()
        return list(await asyncio.gather(*(self.get_active(host, a) for a in ids)))

    async def get_active(self, host: PipelineHost, active_id: str) -> i.ActivePipeline:
        """The run with live metrics; a run whose loop ended is settled in the database."""
        out = await asyncio.to_thread(self._active_out, active_id)
        if out.status not in LIVE:
            return out
        live = await host.status(active_id)
        if live is None:
            await asyncio.to_thread(
                self._settle, active_id, "error", "The pipeline process is gone", None
            )
        elif live["status"] in LIVE:
            return out.model_copy(
                update={"status": live["status"], "metrics": i.PipelineMetrics(**live["metrics"])}
            )
        else:
            await asyncio.to_thread(
                self._settle, active_id, live["status"], live.get("error"), live["metrics"]
            )
            await host.stop(active_id)  # frees the actor; its final state is in the row now
        return await asyncio.to_thread(self._active_out, active_id)

    async def stop(self, host: PipelineHost, active_id: str) -> None:
        out = await asyncio.to_thread(self._active_out, active_id)
        final = await host.stop(active_id)
        if out.status in LIVE:
            metrics = final["metrics"] if final else None
            await asyncio.to_thread(self._settle, active_id, "stopped", None, metrics)

    async def capture(self, host: PipelineHost, active_id: str) -> i.Capture:
        active = await self.get_active(host, active_id)
        if active.status not in LIVE:
            raise Conflict(f"Active pipeline {active_id} is {active.status}")
        frame = await host.capture(active_id)
        if frame is None:
            raise Conflict(f"Active pipeline {active_id} has no frame yet; try again shortly")
        return await asyncio.to_thread(self._store_capture, active_id, frame)

    def _store_capture(self, active_id: str, frame: dict[str, Any]) -> i.Capture:
        with session_scope(self.settings.database_url) as s:
            active = self._active(s, active_id)
            capture_id = new_id()
            key = f"{project_prefix(active.project_id)}captures/{capture_id}.png"
            self.blobs.put(key, frame["png"], "image/png")
            row = InspectCapture(
                id=capture_id,
                project_id=active.project_id,
                active_pipeline_id=active_id,
                score=frame.get("score"),
                image_key=key,
                created_at=utcnow(),
            )
            s.add(row)
            s.flush()
            return i.Capture(
                id=row.id,
                active_pipeline_id=active_id,
                timestamp=row.created_at,
                anomaly_score=row.score,
                image_url=capture_url(row.id),
            )

    def capture_image(self, capture_id: str) -> bytes:
        with session_scope(self.settings.database_url) as s:
            row = s.get(InspectCapture, capture_id)
            if row is None:
                raise NotFound(f"Capture {capture_id} not found")
            key = row.image_key
        return self.blobs.get(key)

    async def live(self, host: PipelineHost, active_id: str) -> None:
        """Raise unless the run is live (for WebRTC)."""
        active = await self.get_active(host, active_id)
        if active.status not in LIVE:
            raise Conflict(f"Active pipeline {active_id} is {active.status}")

    # --- rows ------------------------------------------------------------------------

    def _active(self, s: Session, active_id: str) -> InspectActivePipeline:
        row = s.get(InspectActivePipeline, active_id)
        if row is None:
            raise NotFound(f"Active pipeline {active_id} not found")
        return row

    def _active_out(self, active_id: str) -> i.ActivePipeline:
        with session_scope(self.settings.database_url) as s:
            return _active_out(self._active(s, active_id))

    def _settle(
        self, active_id: str, status: str, error: str | None, metrics: dict[str, Any] | None
    ) -> None:
        with session_scope(self.settings.database_url) as s:
            row = self._active(s, active_id)
            if row.status not in LIVE:
                return  # settled already
            row.status, row.error, row.stopped_at = status, error, utcnow()
            if metrics is not None:
                row.metrics = metrics


def _pipeline_out(p: InspectPipeline) -> i.Pipeline:
    return i.Pipeline(
        id=p.id,
        project_id=p.project_id,
        name=p.name,
        model_id=p.model_id,
        source_id=p.source_id,
        sink_id=p.sink_id,
        config=p.config,
        created_at=p.created_at,
        updated_at=p.updated_at,
    )


def _active_out(a: InspectActivePipeline) -> i.ActivePipeline:
    return i.ActivePipeline(
        id=a.id,
        pipeline_id=a.pipeline_id,
        status=a.status,  # type: ignore[arg-type]
        error=a.error,
        started_at=a.started_at,
        stopped_at=a.stopped_at,
        metrics=i.PipelineMetrics(**(a.metrics or {})),
    )

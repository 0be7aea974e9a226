"""inspect models: training jobs, model records, exports and predictions.

Training is a durable job (kind ``inspect.train``): the row and the model record are
committed before the 202, the job worker runs it (``jobs.py``, a Ray task in the cluster)
and streams its progress and metrics into the job. Exports land in the blob store
under the model's prefix, one folder per format; inference goes through the
multiplexed ``anomaly`` deployment.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import logging
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from visionserve.errors import Conflict, NotFound, Unprocessable, public_failure
from visionserve.platform.logging import request_ref
from visionserve.settings import Settings
from visionserve.store.blobs import BlobStore
from visionserve.store.db import session_scope
from visionserve.store.queue import JobQueue, enqueue
from visionserve.store.records import Job, new_id
from visionserve.surfaces.inspect import schemas as i
from visionserve.surfaces.inspect.pipeline_service import refuse_if_running
from visionserve.surfaces.inspect.records import (
    InspectJob,
    InspectMedia,
    InspectModel,
    InspectSnapshot,
)
from visionserve.surfaces.inspect.service import (
    open_upload,
    project_prefix,
    project_rows,
    require_project,
)

log = logging.getLogger(__name__)

TRAIN_KIND = "inspect.train"
_JOB_STATUS = {"queued": "pending", "processing": "running"}
# What each export format's archive holds, as anomalib's inferencers load it.
_ARCHIVE_HINT = {
    "openvino": "model.xml + model.bin: anomalib.deploy.OpenVINOInferencer(path='model.xml')",
    "onnx": "model.onnx (+ model.onnx.data): onnxruntime.InferenceSession('model.onnx')",
    "pytorch": "model.pt: anomalib.deploy.TorchInferencer(path='model.pt')",
}


def model_prefix(project_id: str, model_id: str) -> str:
    return f"{project_prefix(project_id)}models/{model_id}/"


@dataclass
class ModelService:
    settings: Settings
    blobs: BlobStore
    # Training jobs are cancelled through the queue (its terminal hook runs).
    queue: JobQueue | None = None

    # --- training --------------------------------------------------------------------

    def start_training(
        self, project_id: str, body: i.TrainRequest, *, claimed_by: str | None = None
    ) -> i.TrainAccepted:
        """Validate the request, then commit the model record and its job together.

        ``claimed_by``: the worker that runs the job itself (``jobs.anomaly_train``).

        Raises:
            NotFound: No such project or snapshot.
            Unprocessable: Unknown architecture or parameter, or no normal images.
        """
        from visionserve.models.anomaly.catalog import validate

        parameters = validate(body.architecture, body.parameters, self.settings.model_dir)
        with session_scope(self.settings.database_url) as s:
            require_project(s, project_id)
            media = self._training_media(s, project_id, body.snapshot_id)
            normal = sum(1 for m in media if m["label"] == "normal")
            if normal < 2:
                where = "the snapshot" if body.snapshot_id else "the project"
                raise Unprocessable(
                    f"Training needs at least 2 normal images; {where} has {normal}. "
                    "Upload images with label 'normal' first.",
                    code="no_normal_images",
                )
            model_id = new_id()
            job = enqueue(
                s,
                surface="inspect",
                kind=TRAIN_KIND,
                payload={"model_id": model_id, "project_id": project_id},
                settings=self.settings.jobs,
                claimed_by=claimed_by,
            )
            s.flush()
            s.add(InspectJob(job_id=job.id, project_id=project_id, type="training"))
            s.add(
                InspectModel(
                    id=model_id,
                    project_id=project_id,
                    name=body.model_name,
                    architecture=body.architecture.lower(),
                    parameters=parameters,
                    status="training",
                    metrics={},
                    snapshot_id=body.snapshot_id,
                    job_id=job.id,
                    blob_prefix=model_prefix(project_id, model_id),
                )
            )
            return i.TrainAccepted(job_id=job.id, model_id=model_id, status="pending")

    def _training_media(
        self, s: Session, project_id: str, snapshot_id: str | None
    ) -> list[dict[str, Any]]:
        query = select(InspectMedia).where(InspectMedia.project_id == project_id)
        if snapshot_id is not None:
            snapshot = s.get(InspectSnapshot, snapshot_id)
            if snapshot is None or snapshot.project_id != project_id:
                raise NotFound(f"Snapshot {snapshot_id} not found in project {project_id}")
            query = query.where(InspectMedia.id.in_(snapshot.media_ids))
        rows = s.scalars(query.order_by(InspectMedia.created_at, InspectMedia.id)).all()
        return [
            {"id": m.id, "label": m.label, "image_key": m.image_key, "mask_key": m.mask_key}
            for m in rows
        ]

    def begin(self, model_id: str) -> dict[str, Any] | None:
        """What the training task needs; None when the model was deleted meanwhile."""
        with session_scope(self.settings.database_url) as s:
            model = s.get(InspectModel, model_id)
            if model is None:
                return None
            return {
                "architecture": model.architecture,
                "parameters": model.parameters,
                "blob_prefix": model.blob_prefix,
                "media": self._training_media(s, model.project_id, model.snapshot_id),
            }

    def finish(
        self, model_id: str, *, metrics: dict[str, Any] | None = None, error: str | None = None
    ) -> bool:
        """Record the outcome; False when the model (or its project) was deleted meanwhile."""
        with session_scope(self.settings.database_url) as s:
            model = s.get(InspectModel, model_id)
            if model is None:
                return False
            model.status = "failed" if error else "ready"
            model.error = error
            if metrics is not None:
                model.metrics = metrics
            return True

    # --- models ----------------------------------------------------------------------

    def _model(self, s: Session, model_id: str) -> InspectModel:
        model = s.get(InspectModel, model_id)
        if model is None:
            raise NotFound(f"Model {model_id} not found")
        return model

    def list_models(self, project_id: str) -> list[i.Model]:
        with session_scope(self.settings.database_url) as s:
            return [_model_out(m) for m in project_rows(s, InspectModel, project_id)]

    def get_model(self, model_id: str) -> i.Model:
        with session_scope(self.settings.database_url) as s:
            return _model_out(self._model(s, model_id))

    def ready_model(self, model_id: str) -> i.Model:
        """The model, if it can serve predictions.

        Raises:
            NotFound: No such model.
            Conflict: Still training, or training failed.
        """
        with session_scope(self.settings.database_url) as s:
            return _model_out(self._ready(s, model_id))

    def _ready(self, s: Session, model_id: str) -> InspectModel:
        model = self._model(s, model_id)
        if model.status != "ready":
            raise Conflict(f"Model {model_id} is {model.status}; only a ready model predicts")
        return model

    def delete_model(self, model_id: str) -> None:
        """Delete a model and its exports; 409 while a running pipeline uses it."""
        with session_scope(self.settings.database_url) as s:
            model = self._model(s, model_id)
            refuse_if_running(s, "model_id", model_id, "model")
            prefix, job_id = model.blob_prefix, model.job_id
            s.delete(model)
            if job_id:  # a training run for a deleted model is waste
                assert self.queue is not None
                with contextlib.suppress(NotFound, Conflict):  # gone, or already finished
                    self.queue.cancel_in(s, job_id)
        self.blobs.delete_prefix(prefix)

    def export(self, model_id: str, fmt: i.ExportFormat) -> tuple[str, bytes]:
        """A zip of the format's files, named ``<model name>-<format>.zip``."""
        with session_scope(self.settings.database_url) as s:
            model = self._ready(s, model_id)
            name, architecture = model.name, model.architecture
            prefix = f"{model.blob_prefix}{fmt}/"
        keys = self.blobs.list(prefix)
        if not keys:
            raise NotFound(f"Model {model_id} has no {fmt} export")
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            for key in keys:
                archive.writestr(key[len(prefix) :], self.blobs.get(key))
            archive.writestr("README.txt", f"{name} ({architecture}): {_ARCHIVE_HINT[fmt]}\n")
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
        return f"{safe}-{fmt}.zip", buffer.getvalue()

    # --- jobs ------------------------------------------------------------------------

    def list_jobs(
        self, project_id: str, *, type: i.JobType | None, status: i.JobStatus | None
    ) -> list[i.Job]:
        with session_scope(self.settings.database_url) as s:
            require_project(s, project_id)
            query = (
                select(Job, InspectJob)
                .join(InspectJob, InspectJob.job_id == Job.id)
                .where(InspectJob.project_id == project_id)
                .order_by(Job.created_at)
            )
            if type is not None:
                query = query.where(InspectJob.type == type)
            jobs = [_job_out(job, link) for job, link in s.execute(query).all()]
        return [j for j in jobs if status is None or j.status == status]

    def get_job(self, job_id: str) -> i.Job:
        with session_scope(self.settings.database_url) as s:
            row = s.execute(
                select(Job, InspectJob)
                .join(InspectJob, InspectJob.job_id == Job.id)
                .where(Job.id == job_id)
            ).first()
            if row is None:
                raise NotFound(f"Job {job_id} not found")
            return _job_out(*row)

    def cancel_job(self, queue: JobQueue, job_id: str) -> None:
        """Cancel a job; a queued training never runs, so its model fails right here."""
        self.get_job(job_id)  # 404 for jobs of other surfaces
        job = queue.cancel(job_id)
        if job.status == "cancelled" and job.kind == TRAIN_KIND:
            self.finish(job.payload["model_id"], error="Training was cancelled")

    # --- predictions -----------------------------------------------------------------

    async def predict(self, handle: Callable[[], Any], model_id: str, data: bytes) -> i.Prediction:
        """Score one image with a ready model through the multiplexed deployment.

        ``handle`` is asked for only once the model and the image are known good: a
        request for a missing model is a 404 even on a cluster without the deployment.
        """
        await asyncio.to_thread(self.ready_model, model_id)
        rgb = await asyncio.to_thread(self._decode, data)
        deployment = handle()
        started = time.perf_counter()
        try:
            out = await deployment.options(multiplexed_model_id=model_id).predict.remote(rgb)
        except Exception as exc:
            failure = public_failure(exc, ref=request_ref(), logger=log)
            message = f"Prediction failed: {failure.message}"
            raise replace(failure, message=message).error(Unprocessable) from exc
        return i.Prediction(
            model_id=model_id,
            score=out["score"],
            label="anomalous" if out["is_anomalous"] else "normal",
            anomaly_map=base64.b64encode(out["heatmap_png"]).decode(),
            width=rgb.shape[1],
            height=rgb.shape[0],
            inference_ms=round((time.perf_counter() - started) * 1000, 2),
        )

    def _decode(self, data: bytes) -> np.ndarray:
        return np.asarray(open_upload(self.settings, data, "Image").convert("RGB"))


def _model_out(m: InspectModel) -> i.Model:
    return i.Model(
        id=m.id,
        project_id=m.project_id,
        name=m.name,
        architecture=m.architecture,
        parameters=m.parameters,
        status=m.status,  # type: ignore[arg-type]
        metrics=m.metrics,
        error=m.error,
        job_id=m.job_id,
        snapshot_id=m.snapshot_id,
        created_at=m.created_at,
    )


def _job_out(job: Job, link: InspectJob) -> i.Job:
    return i.Job(
        id=job.id,
        project_id=link.project_id,
        type=link.type,  # type: ignore[arg-type]
        status=_JOB_STATUS.get(job.status, job.status),  # type: ignore[arg-type]
        progress=job.progress,
        message=job.message,
        metrics=job.metrics or {},
        result=job.result,
        error=job.error,
        created_at=job.created_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
    )

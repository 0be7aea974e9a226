"""edit's business rules: accepting jobs, the COS configuration, a job's state.

A job is a committed row (and its input a stored blob) before the 202 is sent; the
job worker runs it (``jobs.py``) and the platform's outbox delivers its callback.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import select

from visionserve.errors import NotFound, VisionServeError
from visionserve.platform.images import decode_base64
from visionserve.settings import Settings
from visionserve.store.blobs import BlobStore
from visionserve.store.db import session_scope
from visionserve.store.queue import JobQueue, enqueue
from visionserve.store.records import Job, WebhookAttempt, WebhookDelivery
from visionserve.surfaces.edit import cos
from visionserve.surfaces.edit import schemas as s

SURFACE = "edit"
B64_KIND, COS_KIND, BATCH_KIND = "edit.b64", "edit.cos", "edit.batch"
KINDS = {B64_KIND: "b64", COS_KIND: "cos", BATCH_KIND: "batch"}
DEFAULT_FILENAME = "image.png"


def input_key(job_id: str) -> str:
    return f"edit/inputs/{job_id}"


@dataclass
class EditService:
    settings: Settings
    blobs: BlobStore
    queue: JobQueue

    def cos_config(self) -> s.CosConfig:
        edit = self.settings.edit
        return s.CosConfig(
            endpoint=cos.endpoint(self.settings),
            region=cos.region(self.settings),
            input_bucket=edit.input_bucket,
            output_bucket=edit.output_bucket,
            input_prefix=edit.input_prefix,
            output_prefix=edit.output_prefix,
            presign_expires=edit.presign_expires,
        )

    def submit_image(
        self, delivery: Literal["b64", "cos"], req: s.ImageRequest, callback_url: str
    ) -> s.Accepted:
        """Store the image, commit the job; bad image data becomes a failed callback.

        The contract answers 202 for any request with a prompt and a callback, and
        reports undecodable data in the callback: the decoding error rides in the
        payload and the job fails with it.
        """
        job_id = str(uuid.uuid4())
        payload: dict[str, Any] = {
            "prompt": req.prompt,
            "filename": req.filename or DEFAULT_FILENAME,
        }
        try:
            data = decode_base64(req.image_base64, field="image_base64")
        except VisionServeError as exc:
            payload["input_error"] = exc.message
        else:
            limit = self.settings.limits.max_download_bytes
            if len(data) > limit:
                payload["input_error"] = f"image_base64 is over the {limit} byte limit"
            else:
                self.blobs.put(input_key(job_id), data)
                payload["input_key"] = input_key(job_id)
        self._enqueue(job_id, B64_KIND if delivery == "b64" else COS_KIND, payload, callback_url)
        return s.Accepted(job_id=job_id)

    def submit_batch(self, req: s.BatchRequest, callback_url: str) -> s.Accepted:
        job_id = str(uuid.uuid4())
        prefix = cos.join_prefix(self.settings.edit.output_prefix, job_id)
        payload = {
            "prompt": req.prompt,
            "output_bucket": self.settings.edit.output_bucket,
            "output_prefix": prefix,
        }
        self._enqueue(job_id, BATCH_KIND, payload, callback_url)
        return s.Accepted(job_id=job_id)

    def _enqueue(self, job_id: str, kind: str, payload: dict[str, Any], callback_url: str) -> None:
        with session_scope(self.settings.database_url) as db:
            enqueue(
                db,
                surface=SURFACE,
                kind=kind,
                payload=payload,
                settings=self.settings.jobs,
                job_id=job_id,
                webhook_url=callback_url,
            )

    def job(self, job_id: str) -> s.JobView:
        """State, progress, result (without image data) and the callback's delivery log."""
        try:
            job = self.queue.get(job_id)
        except NotFound:
            raise NotFound(f"Job {job_id} not found") from None
        if job.surface != SURFACE:
            raise NotFound(f"Job {job_id} not found")
        return s.JobView(
            job_id=job.id,
            kind=KINDS[job.kind],  # type: ignore[arg-type]
            state=job.status,
            progress=job.progress,
            message=job.message,
            metrics=job.metrics,
            created_at=job.created_at,
            started_at=job.started_at,
            finished_at=job.finished_at,
            error=job.error,
            result=_without_image(job.result),
            callback_url=job.webhook_url,
            deliveries=self._deliveries(job),
        )

    def _deliveries(self, job: Job) -> list[s.Delivery]:
        with session_scope(self.settings.database_url) as db:
            rows = db.scalars(
                select(WebhookDelivery)
                .where(WebhookDelivery.event_id.like(f"job.%:{job.id}"))
                .order_by(WebhookDelivery.created_at)
            ).all()
            out = []
            for row in rows:
                attempts = db.scalars(
                    select(WebhookAttempt)
                    .where(WebhookAttempt.delivery_id == row.id)
                    .order_by(WebhookAttempt.attempt)
                ).all()
                out.append(
                    s.Delivery(
                        event_id=row.event_id,
                        url=row.url,
                        status=row.status,
                        attempts=row.attempts,
                        last_status_code=row.last_status_code,
                        last_error=row.last_error,
                        created_at=row.created_at,
                        delivered_at=row.delivered_at,
                        log=[
                            s.Attempt(
                                attempt=a.attempt,
                                status_code=a.status_code,
                                error=a.error,
                                duration_ms=a.duration_ms,
                                at=a.at,
                            )
                            for a in attempts
                        ],
                    )
                )
            return out


def _without_image(result: dict[str, Any] | None) -> dict[str, Any] | None:
    if result is None or "result_image_base64" not in result:
        return result
    shown = {k: v for k, v in result.items() if k != "result_image_base64"}
    shown["result_image_base64_chars"] = len(result["result_image_base64"])
    return shown

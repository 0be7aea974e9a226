"""Ingest: read the image (URL, base64 or upload), check it, commit the job, maybe wait.

What can be known at ingest is refused at ingest with a 4xx: a bad base64 string, an
unreachable or refused URL, an unsupported type, a corrupt or encrypted file, too
many pages. The job row and its queue row are committed before any answer; the
answer is the finished job when it completes within the sync window, else 202
``queued`` with an estimate from the recent jobs' timings.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import func, select

from visionserve.errors import (
    BadRequest,
    EgressRefused,
    FetchFailed,
    InvalidImage,
    MissingInput,
    VisionServeError,
)
from visionserve.platform.egress import EgressPolicy
from visionserve.platform.inputs import read_input_bytes
from visionserve.settings import Settings
from visionserve.store.blobs import BlobStore
from visionserve.store.db import session_scope
from visionserve.store.queue import enqueue
from visionserve.store.records import Job, utcnow
from visionserve.surfaces.extract import schemas as x
from visionserve.surfaces.extract.records import ExtractJob, ExtractPattern
from visionserve.surfaces.extract.service import FINISHED, JOB_KIND, ExtractService, iso

HIGH_PRIORITY = 10
MIME = {
    "pdf": "application/pdf",
    "png": "image/png",
    "jpeg": "image/jpeg",
    "tiff": "image/tiff",
    "webp": "image/webp",
}
# Before any job has finished: a guess of one page's time end to end.
_DEFAULT_JOB_MS = 3000.0


@dataclass
class Upload:
    """What the client sent: exactly one of ``url``, ``base64`` or ``data`` (multipart)."""

    url: str | None = None
    base64: str | None = None
    data: bytes | None = None
    file_name: str | None = None


@dataclass
class IngestService:
    settings: Settings
    blobs: BlobStore
    egress: EgressPolicy

    async def read(self, upload: Upload) -> bytes:
        """The image's bytes; every way it can fail is a 400 ``invalid_image`` (or 413)."""
        given = [v for v in (upload.url, upload.base64, upload.data) if v is not None]
        if len(given) != 1:
            raise MissingInput(
                "Send exactly one of image_url, image_base64 or a multipart file",
                code="invalid_request",
            )
        if upload.data is not None:
            if len(upload.data) > self.settings.limits.max_download_bytes:
                raise InvalidImage("The file is larger than the upload limit")
            return upload.data
        try:
            return await read_input_bytes(
                upload.base64,
                upload.url,
                egress=self.egress,
                settings=self.settings,
                field="image",
            )
        except EgressRefused:
            raise
        except FetchFailed as exc:
            raise InvalidImage(
                f"Image URL is not accessible: {exc.message}", details={"reason": exc.code}
            ) from None
        except BadRequest as exc:
            if exc.code == "invalid_base64":
                raise InvalidImage(exc.message, details={"reason": exc.code}) from None
            raise

    def probe(self, data: bytes) -> tuple[str, int]:
        """The file's kind and page count, without rendering; a 400 for what cannot be read."""
        from visionserve.models.documents.source import count_pages, sniff_document

        try:
            kind = sniff_document(data)
            pages = count_pages(data, max_pixels=self.settings.limits.max_image_pixels)
        except VisionServeError as exc:
            if exc.status >= 500 or exc.code == "encrypted_pdf":  # the client can act on it
                raise
            message = exc.message
            if message == "Unsupported file type":
                message = "Unsupported file type: send JPG, PNG, WEBP, TIFF or PDF"
            raise InvalidImage(message, details=exc.details or None) from None
        if pages < 1:
            raise InvalidImage("The document has no pages")
        limit = self.settings.extract.max_pages
        if pages > limit:
            raise InvalidImage(
                f"The document has {pages} pages; the limit is {limit}",
                code="too_many_pages",
                details={"pages": pages, "limit": limit},
            )
        return kind, pages

    async def ingest(
        self,
        owner: str,
        pattern: ExtractPattern,
        upload: Upload,
        metadata: dict[str, Any] | None,
        priority: str,
    ) -> tuple[int, x.JobView]:
        """Accept an image for ``pattern``; returns the HTTP status and the job's view."""
        ExtractService(self.settings).check_engine(pattern.engine)
        data = await self.read(upload)
        kind, pages = await asyncio.to_thread(self.probe, data)
        job_id = str(uuid.uuid4())
        input_key = f"extract/jobs/{job_id}/input.{kind}"
        await asyncio.to_thread(self.blobs.put, input_key, data, MIME[kind])
        try:
            await asyncio.to_thread(
                self._commit,
                job_id,
                owner,
                pattern,
                input_key,
                upload.url,
                pages,
                metadata,
                priority,
            )
        except BaseException:
            await asyncio.to_thread(self.blobs.delete, input_key)
            raise
        finished = await self._wait(owner, job_id)
        if finished is not None:
            finished.approach = "sync"
            return 200, finished
        eta = await asyncio.to_thread(self.estimate, job_id)
        return 202, x.JobView(
            job_id=job_id,
            pattern_id=pattern.id,
            status="queued",
            message="Job queued for background processing",
            approach="queued",
            estimated_completion_time=iso(eta),
        )

    def _commit(
        self,
        job_id: str,
        owner: str,
        pattern: ExtractPattern,
        input_key: str,
        input_url: str | None,
        pages: int,
        metadata: dict[str, Any] | None,
        priority: str,
    ) -> None:
        spec = {
            "schema": pattern.schema_raw,
            "instructions": pattern.instructions,
            "output_format": pattern.output_format,
            "engine": pattern.engine,
            "webhook_url": pattern.webhook_url,
        }
        with session_scope(self.settings.database_url) as s:
            s.add(
                ExtractJob(
                    id=job_id,
                    owner=owner,
                    pattern_id=pattern.id,
                    status="queued",
                    priority=priority,
                    units=pages * (2 if priority == "high" else 1),
                    spec=spec,
                    meta=metadata,
                    input_key=input_key,
                    input_url=input_url,
                    page_count=pages,
                )
            )
            enqueue(
                s,
                surface="extract",
                kind=JOB_KIND,
                payload={"job_id": job_id},
                settings=self.settings.jobs,
                job_id=job_id,
                owner_key_id=owner,
                priority=HIGH_PRIORITY if priority == "high" else 0,
            )

    async def _wait(self, owner: str, job_id: str) -> x.JobView | None:
        """The finished job if it finishes within the sync window, else None."""
        window = self.settings.extract.sync_window_s
        deadline = time.monotonic() + window
        delay = 0.05
        service = ExtractService(self.settings)
        while window > 0:
            status = await asyncio.to_thread(self._status, job_id)
            if status in FINISHED:
                return await asyncio.to_thread(service.get_job, owner, job_id)
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            await asyncio.sleep(min(delay, left))
            delay = min(delay * 1.5, 0.25)
        return None

    def _status(self, job_id: str) -> str | None:
        with session_scope(self.settings.database_url) as s:
            return s.scalar(select(ExtractJob.status).where(ExtractJob.id == job_id))

    def estimate(self, job_id: str) -> Any:
        """When the job should finish: the jobs ahead of it, at the recent mean time per job."""
        with session_scope(self.settings.database_url) as s:
            recent = list(
                s.scalars(
                    select(ExtractJob.processing_time_ms)
                    .where(ExtractJob.status == "completed")
                    .order_by(ExtractJob.finished_at.desc())
                    .limit(20)
                )
            )
            mine = s.get(Job, job_id)
            ahead = 0
            if mine is not None:
                ahead = int(
                    s.scalar(
                        select(func.count())
                        .select_from(Job)
                        .where(
                            Job.kind == JOB_KIND,
                            Job.status.in_(("queued", "processing")),
                            Job.id != job_id,
                            (Job.priority > mine.priority)
                            | (
                                (Job.priority == mine.priority)
                                & (Job.created_at <= mine.created_at)
                            ),
                        )
                    )
                    or 0
                )
        per_job = sum(r for r in recent if r) / len(recent) if recent else _DEFAULT_JOB_MS
        slots = max(1, self.settings.jobs.concurrency)
        return utcnow() + timedelta(milliseconds=per_job * (ahead / slots + 1))

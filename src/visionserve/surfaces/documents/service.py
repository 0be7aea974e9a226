"""documents service: the chunkr task lifecycle on the durable job machinery.

A task is a row plus a job: creating one validates the file (type, pages, limits),
stores it, and commits the task and its job before answering. The job handler runs
the document graph and stores the output JSON in the blob store. Expired tasks
disappear from the API at once and are swept (rows and blobs) by the workers.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import math
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select

from visionserve.errors import BadRequest, Conflict, NotFound, RateLimited
from visionserve.models.documents.config import validated
from visionserve.platform.egress import EgressPolicy
from visionserve.platform.inputs import read_input_bytes
from visionserve.settings import Settings
from visionserve.store.blobs import BlobStore
from visionserve.store.db import session_scope
from visionserve.store.queue import JobQueue, enqueue
from visionserve.store.records import utcnow
from visionserve.surfaces.documents import schemas as d
from visionserve.surfaces.documents.records import DocumentTask, DocumentUsage

log = logging.getLogger(__name__)

FINISHED = ("Succeeded", "Failed", "Cancelled")
JOB_KIND = "documents.parse"


def month_of(when: datetime) -> str:
    return when.strftime("%Y-%m")


def next_month(when: datetime) -> datetime:
    """Midnight on the first day of the month after ``when`` (same timezone)."""
    first = when.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    return (first + timedelta(days=32)).replace(day=1)


@dataclass
class DocumentService:
    settings: Settings
    blobs: BlobStore
    egress: EgressPolicy | None = None
    # Task jobs are cancelled through the queue, so their terminal hooks run.
    queue: JobQueue | None = None
    # Where clients reach the task API (``https://host/documents``): ``task_url`` is
    # built on it, and SDKs poll, update, cancel and delete through that URL.
    api_url: str | None = None

    @property
    def model_home(self) -> Path:
        return self.settings.model_dir

    # --- create ----------------------------------------------------------------------

    async def read_file(self, file: str) -> tuple[bytes, str | None]:
        """The bytes of ``file`` (URL or base64) and the URL it came from."""
        assert self.egress is not None
        url = file if file.startswith(("http://", "https://")) else None
        data = await read_input_bytes(
            None if url else file, url, egress=self.egress, settings=self.settings, field="file"
        )
        return data, url

    async def create(
        self,
        owner: str,
        data: bytes,
        file_name: str | None,
        config: d.Configuration,
        input_url: str | None = None,
    ) -> d.TaskResponse:
        from visionserve.models.documents.source import count_pages, sniff_document
        from visionserve.models.documents.tokenizers import get_tokenizer

        # A tokenizer whose file is missing is the client's error: say so now, not later.
        get_tokenizer(config.chunk_processing.tokenizer, self.model_home)
        kind = sniff_document(data)  # "Unsupported file type" otherwise
        pages = await asyncio.to_thread(count_pages, data)
        if pages > self.settings.documents.max_pages:
            raise BadRequest(
                f"Document has {pages} pages; the limit is {self.settings.documents.max_pages}"
            )
        task_id = str(uuid.uuid4())
        input_key = f"documents/tasks/{task_id}/input.{kind}"
        await asyncio.to_thread(self.blobs.put, input_key, data, _MIME.get(kind))
        try:
            await asyncio.to_thread(
                self._commit_new, task_id, owner, input_key, input_url, file_name, config, pages
            )
        except BaseException:
            await asyncio.to_thread(self.blobs.delete, input_key)
            raise
        return await asyncio.to_thread(self.get, task_id, owner)

    def _commit_new(
        self,
        task_id: str,
        owner: str,
        input_key: str,
        input_url: str | None,
        file_name: str | None,
        config: d.Configuration,
        pages: int,
    ) -> None:
        now = utcnow()
        with session_scope(self.settings.database_url) as s:
            self._charge(s, owner, pages, now)
            task = DocumentTask(
                id=task_id,
                owner=owner,
                input_key=input_key,
                input_url=input_url,
                file_name=file_name,
                configuration=config.model_dump(mode="json"),
                page_count=pages,
                created_at=now,
                message="Task queued",
                expires_at=now + timedelta(seconds=config.expires_in)
                if config.expires_in
                else None,
            )
            s.add(task)
            self._enqueue(s, task)

    def _charge(self, s: Any, owner: str, pages: int, now: datetime) -> None:
        """Count the pages against this month's usage; refuse past the limit."""
        month = month_of(now)
        row = s.get(DocumentUsage, (owner, month), with_for_update=True)
        if row is None:
            row = DocumentUsage(owner=owner, month=month, pages=0)
            s.add(row)
        limit = self.settings.documents.monthly_page_limit
        if limit is not None and row.pages + pages > limit:
            resets = next_month(now)
            raise RateLimited(
                f"Usage limit exceeded: monthly page limit of {limit} pages reached "
                f"({row.pages} used in {month}, {pages} asked); it resets on {resets:%Y-%m-%d}",
                code="usage_limit_exceeded",
                details={"limit": limit, "used": row.pages, "requested": pages},
                headers={"Retry-After": str(max(1, math.ceil((resets - now).total_seconds())))},
            )
        row.pages += pages

    def _enqueue(self, s: Any, task: DocumentTask) -> None:
        job = enqueue(
            s,
            surface="documents",
            kind=JOB_KIND,
            payload={"task_id": task.id},
            settings=self.settings.jobs,
            owner_key_id=task.owner,
        )
        task.job_id = job.id
        task.status, task.message = "Starting", "Task queued"
        task.started_at = task.finished_at = None

    # --- read ------------------------------------------------------------------------

    def _task(self, s: Any, task_id: str, owner: str, *, lock: bool = False) -> DocumentTask:
        task = s.get(DocumentTask, task_id, with_for_update=lock)
        if task is None or task.owner != owner or _expired(task):
            raise NotFound("Task not found")
        return task

    def get(
        self, task_id: str, owner: str, *, include_chunks: bool = True, base64_urls: bool = False
    ) -> d.TaskResponse:
        with session_scope(self.settings.database_url) as s:
            task = self._task(s, task_id, owner)
            s.expunge(task)
        return self.render(task, include_chunks=include_chunks, base64_urls=base64_urls)

    def render(
        self, task: DocumentTask, *, include_chunks: bool, base64_urls: bool
    ) -> d.TaskResponse:
        output = d.Output(file_name=task.file_name, page_count=task.page_count)
        if task.input_key.endswith(".pdf"):
            output.pdf_url = self._url(task.input_key, base64_urls)
        if task.output_key and include_chunks:
            stored = json.loads(self.blobs.get(task.output_key))
            output.chunks = [d.ChunkOut.model_validate(c) for c in stored["chunks"]]
            for chunk in output.chunks:
                for seg in chunk.segments:
                    if seg.image and not seg.image.startswith(("http", "data:")):
                        # Stored as a blob key: signed (or inlined) only when read.
                        key, seg.image = seg.image, self._url(seg.image, base64_urls)
                        seg.html = seg.html.replace(key, seg.image)
                        seg.markdown = seg.markdown.replace(key, seg.image)
        config = d.ConfigurationOut.model_validate(
            {
                **task.configuration,
                "input_file_url": task.input_url or self._url(task.input_key, False),
            }
        )
        return d.TaskResponse(
            task_id=task.id,
            status=task.status,  # type: ignore[arg-type]
            created_at=task.created_at,
            started_at=task.started_at,
            finished_at=task.finished_at,
            expires_at=task.expires_at,
            message=task.message,
            task_url=f"{self._api_url}/api/v1/task/{task.id}",
            configuration=config,
            output=output,
        )

    @property
    def _api_url(self) -> str:
        return (self.api_url or f"{self.settings.public_url}/documents").rstrip("/")

    def _url(self, key: str, inline: bool) -> str:
        if inline:
            data = self.blobs.get(key)
            mime = self.blobs.content_type(key) or "application/octet-stream"
            return f"data:{mime};base64,{base64.b64encode(data).decode()}"
        return self.blobs.url(key)

    def list(
        self,
        owner: str,
        *,
        page: int | None,
        limit: int | None,
        start: datetime | None,
        end: datetime | None,
        include_chunks: bool,
        base64_urls: bool,
    ) -> list[d.TaskResponse]:
        if page is not None and limit is None:
            raise BadRequest("limit is required when page is provided")
        with session_scope(self.settings.database_url) as s:
            query = select(DocumentTask).where(DocumentTask.owner == owner)
            if start is not None:
                query = query.where(DocumentTask.created_at >= start)
            if end is not None:
                query = query.where(DocumentTask.created_at <= end)
            query = query.order_by(DocumentTask.created_at.desc())
            if limit is not None:
                query = query.limit(limit).offset(((page or 1) - 1) * limit)
            tasks = [t for t in s.scalars(query) if not _expired(t)]
            for t in tasks:
                s.expunge(t)
        return [
            self.render(t, include_chunks=include_chunks, base64_urls=base64_urls) for t in tasks
        ]

    # --- change ----------------------------------------------------------------------

    def update(self, task_id: str, owner: str, change: d.UpdateTask) -> d.TaskResponse:
        with session_scope(self.settings.database_url) as s:
            task = self._task(s, task_id, owner, lock=True)
            if task.status not in ("Succeeded", "Failed"):
                raise BadRequest("Task cannot be updated")
            current = validated(d.Configuration, task.configuration)
            merged = validated(
                d.Configuration, {**current.model_dump(), **change.model_dump(exclude_none=True)}
            )
            if merged.model_dump(mode="json") == current.model_dump(mode="json"):
                raise BadRequest("Task cannot be updated: the configuration is unchanged")
            from visionserve.models.documents.tokenizers import get_tokenizer

            get_tokenizer(merged.chunk_processing.tokenizer, self.model_home)
            self._charge(s, owner, task.page_count or 0, utcnow())
            task.configuration = merged.model_dump(mode="json")
            if merged.expires_in:
                task.expires_at = utcnow() + timedelta(seconds=merged.expires_in)
            self._enqueue(s, task)
        return self.get(task_id, owner)

    def cancel(self, task_id: str, owner: str) -> str:
        """Cancel a task whose job has not started; the job goes through the queue."""
        assert self.queue is not None
        with session_scope(self.settings.database_url) as s:
            task = self._task(s, task_id, owner, lock=True)
            if task.status != "Starting":
                raise BadRequest("Task cannot be cancelled")
            if task.job_id:
                try:  # in this transaction: the task and its job change together
                    self.queue.cancel_in(s, task.job_id, running=False)
                except Conflict:
                    raise BadRequest("Task cannot be cancelled") from None
                except NotFound:
                    pass  # the job row is gone: nothing left to stop
            task.status, task.message, task.finished_at = "Cancelled", "Task cancelled", utcnow()
        return "Task cancelled"

    def delete(self, task_id: str, owner: str) -> str:
        with session_scope(self.settings.database_url) as s:
            task = self._task(s, task_id, owner, lock=True)
            if task.status not in FINISHED:
                raise BadRequest(f"Task cannot be deleted: status is {task.status}")
            s.delete(task)
        self.blobs.delete_prefix(f"documents/tasks/{task_id}/")
        return "Task deleted"

    def usage(self, owner: str) -> d.MonthlyUsage:
        now = utcnow()
        with session_scope(self.settings.database_url) as s:
            row = s.get(DocumentUsage, (owner, month_of(now)))
            return d.MonthlyUsage(
                usage=row.pages if row else 0,
                usage_limit=self.settings.documents.monthly_page_limit or 0,
                created_at=row.created_at if row else now,
                updated_at=row.updated_at if row else now,
            )

    # --- processing (job worker) -------------------------------------------------------

    def begin(self, task_id: str, job_id: str) -> DocumentTask | None:
        with session_scope(self.settings.database_url) as s:
            task = s.get(DocumentTask, task_id, with_for_update=True)
            if task is None or task.job_id != job_id or task.status == "Cancelled":
                return None  # deleted, re-queued by a PATCH, or cancelled meanwhile
            task.status, task.message, task.started_at = "Processing", "Processing", utcnow()
            s.flush()
            s.expunge(task)
            return task

    def finish(
        self, task_id: str, job_id: str, status: str, message: str, output_key: str | None
    ) -> None:
        with session_scope(self.settings.database_url) as s:
            task = s.get(DocumentTask, task_id, with_for_update=True)
            if task is None or task.job_id != job_id:
                return
            task.status, task.message, task.finished_at = status, message, utcnow()
            if output_key:
                task.output_key = output_key

    def sweep_expired(self) -> int:
        """Delete expired tasks and their blobs; returns how many."""
        now = utcnow()
        with session_scope(self.settings.database_url) as s:
            expired = list(
                s.scalars(select(DocumentTask).where(DocumentTask.expires_at < now).limit(200))
            )
            ids = [t.id for t in expired]
            for task in expired:
                s.delete(task)
        for task_id in ids:
            self.blobs.delete_prefix(f"documents/tasks/{task_id}/")
        return len(ids)


def _expired(task: DocumentTask) -> bool:
    return task.expires_at is not None and task.expires_at <= utcnow()


_MIME = {
    "pdf": "application/pdf",
    "png": "image/png",
    "jpeg": "image/jpeg",
    "tiff": "image/tiff",
    "webp": "image/webp",
}

"""extract's business rules: patterns, jobs and webhooks, all owned by the calling key.

A pattern's schema is validated once here (``ExtractionSchema.parse``), stored as the
client wrote it and parsed again where the engine loads it. A job keeps a snapshot of
its pattern (schema, instructions, output format, engine, webhook) taken at ingest, so
editing or deleting the pattern never changes a job already accepted. Finishing a job
and queueing its webhooks happen in one transaction (the platform's outbox).
"""

from __future__ import annotations

import math
import secrets
import string
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from visionserve.errors import BadRequest, NotFound
from visionserve.platform import webhooks
from visionserve.settings import Settings
from visionserve.store.db import session_scope
from visionserve.store.records import Job, utcnow
from visionserve.surfaces.extract import schemas as x
from visionserve.surfaces.extract.formats import render
from visionserve.surfaces.extract.records import ExtractJob, ExtractPattern, ExtractWebhook

JOB_KIND = "extract.run"
MOUNT = "/extract/api"
FINISHED = ("completed", "failed")
_ALPHABET = string.ascii_letters + string.digits


def new_public_id(prefix: str, length: int = 10) -> str:
    """``pat_2gYc3kZ8mN``-style ids: a prefix and random letters and digits."""
    return prefix + "".join(secrets.choice(_ALPHABET) for _ in range(length))


def iso(when: datetime | None) -> str | None:
    """The contract's timestamps: UTC to the second, ``Z``-suffixed."""
    if when is None:
        return None
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def validate_schema(raw: Any) -> None:
    """Parse ``raw`` as the engine will; a 400 ``invalid_schema`` naming the bad node's path."""
    from visionserve.models.extraction.schema import ExtractionSchema

    ExtractionSchema.parse(raw)


def validate_url(url: str, field: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise BadRequest(
            f"{field} must be an http(s) URL", code="invalid_request", details={"field": field}
        )
    return url


@dataclass
class ExtractService:
    settings: Settings

    @property
    def db(self) -> str:
        return self.settings.database_url

    def endpoint(self, pattern_id: str) -> str:
        return f"{self.settings.public_url.rstrip('/')}{MOUNT}/patterns/{pattern_id}/ingest"

    def check_engine(self, engine: str | None) -> None:
        if engine == "vlm" and not self.settings.extract.vlm.base_url:
            raise BadRequest(
                "engine 'vlm' needs a VLM endpoint (settings extract.vlm.base_url); "
                "use 'local' or 'auto'",
                code="invalid_request",
                details={"field": "engine"},
            )

    # --- patterns ----------------------------------------------------------------------

    def create_pattern(self, owner: str, body: x.CreatePattern) -> x.PatternCreated:
        validate_schema(body.schema_)
        if body.webhook_url:
            validate_url(body.webhook_url, "webhook_url")
        self.check_engine(body.engine)
        now = utcnow()
        pattern = ExtractPattern(
            id=new_public_id("pat_"),
            owner=owner,
            name=body.name,
            output_format=body.output_format,
            instructions=body.instructions,
            schema_raw=body.schema_,
            status=body.status,
            engine=body.engine or self.settings.extract.default_engine,
            webhook_url=body.webhook_url,
            meta=body.metadata,
            created_at=now,
            updated_at=now,
        )
        with session_scope(self.db) as s:
            s.add(pattern)
        return x.PatternCreated(
            pattern_id=pattern.id,
            name=pattern.name,
            output_format=body.output_format,
            status=body.status,
            endpoint=self.endpoint(pattern.id),
            created_at=iso(now) or "",
        )

    def _pattern(self, s: Session, owner: str, pattern_id: str) -> ExtractPattern:
        pattern = s.get(ExtractPattern, pattern_id)
        if pattern is None or pattern.owner != owner:
            raise NotFound(f"Pattern {pattern_id} not found")
        return pattern

    def pattern_for_ingest(self, owner: str, pattern_id: str) -> ExtractPattern:
        """The pattern, if it may take images now (active); else a clear 4xx."""
        with session_scope(self.db) as s:
            pattern = self._pattern(s, owner, pattern_id)
            s.expunge(pattern)
        if pattern.status != "active":
            raise BadRequest(
                f"Pattern {pattern_id} is {pattern.status}; only active patterns accept "
                "images (PATCH its status to 'active')",
                code="pattern_inactive",
                details={"status": pattern.status},
            )
        return pattern

    def list_patterns(
        self, owner: str, *, page: int, limit: int, status: str | None
    ) -> x.PatternList:
        with session_scope(self.db) as s:
            query = select(ExtractPattern).where(ExtractPattern.owner == owner)
            if status:
                query = query.where(ExtractPattern.status == status)
            total, rows = _page(s, query, ExtractPattern, page=page, limit=limit)
            counts = dict(
                s.execute(  # type: ignore[arg-type]
                    select(ExtractJob.pattern_id, func.count())
                    .where(ExtractJob.pattern_id.in_([p.id for p in rows]))
                    .group_by(ExtractJob.pattern_id)
                ).all()
            )
        return x.PatternList(
            patterns=[
                x.PatternSummary(
                    pattern_id=p.id,
                    name=p.name,
                    output_format=p.output_format,  # type: ignore[arg-type]
                    status=p.status,  # type: ignore[arg-type]
                    created_at=iso(p.created_at) or "",
                    updated_at=iso(p.updated_at) or "",
                    request_count=int(counts.get(p.id, 0)),
                )
                for p in rows
            ],
            pagination=_pagination(page, limit, int(total)),
        )

    def get_pattern(self, owner: str, pattern_id: str) -> x.PatternDetail:
        with session_scope(self.db) as s:
            p = self._pattern(s, owner, pattern_id)
            stats = self._statistics(s, p.id)
            return x.PatternDetail(
                pattern_id=p.id,
                name=p.name,
                output_format=p.output_format,  # type: ignore[arg-type]
                instructions=p.instructions,
                schema_=p.schema_raw,
                status=p.status,  # type: ignore[arg-type]
                engine=p.engine,  # type: ignore[arg-type]
                webhook_url=p.webhook_url,
                metadata=p.meta,
                endpoint=self.endpoint(p.id),
                created_at=iso(p.created_at) or "",
                updated_at=iso(p.updated_at) or "",
                statistics=stats,
            )

    def _statistics(self, s: Session, pattern_id: str) -> x.Statistics:
        """Counted from the pattern's job rows: requests, success rate, mean time, usage."""
        total, completed, failed, avg_ms, units = s.execute(
            select(
                func.count(),
                func.sum(case((ExtractJob.status == "completed", 1), else_=0)),
                func.sum(case((ExtractJob.status == "failed", 1), else_=0)),
                func.avg(case((ExtractJob.status == "completed", ExtractJob.processing_time_ms))),
                func.sum(ExtractJob.units),
            ).where(ExtractJob.pattern_id == pattern_id)
        ).one()
        finished = int(completed or 0) + int(failed or 0)
        return x.Statistics(
            total_requests=int(total or 0),
            success_rate=round(100.0 * int(completed or 0) / finished, 1) if finished else 0.0,
            avg_processing_time_ms=round(float(avg_ms)) if avg_ms is not None else 0,
            usage_units=int(units or 0),
        )

    def update_pattern(
        self, owner: str, pattern_id: str, body: x.UpdatePattern
    ) -> x.PatternUpdated:
        sent = body.model_fields_set
        if not sent:
            raise BadRequest("Nothing to update: send at least one field", code="invalid_request")
        for name in ("name", "output_format", "instructions", "schema_", "status"):
            if name in sent and getattr(body, name) is None:
                field = name.rstrip("_")
                raise BadRequest(
                    f"{field} cannot be null", code="invalid_request", details={"field": field}
                )
        if body.schema_ is not None:
            validate_schema(body.schema_)
        if body.webhook_url:
            validate_url(body.webhook_url, "webhook_url")
        self.check_engine(body.engine)
        now = utcnow()
        with session_scope(self.db) as s:
            p = self._pattern(s, owner, pattern_id)
            if body.name is not None:
                p.name = body.name
            if body.output_format is not None:
                p.output_format = body.output_format
            if body.instructions is not None:
                p.instructions = body.instructions
            if body.schema_ is not None:
                p.schema_raw = body.schema_
            if body.status is not None:
                p.status = body.status
            if body.engine is not None:
                p.engine = body.engine
            if "webhook_url" in sent:
                p.webhook_url = body.webhook_url
            if "metadata" in sent:
                p.meta = body.metadata
            p.updated_at = now
        return x.PatternUpdated(pattern_id=pattern_id, updated_at=iso(now) or "")

    def delete_pattern(self, owner: str, pattern_id: str) -> None:
        """Its jobs stay readable (they keep their own snapshot of the pattern)."""
        with session_scope(self.db) as s:
            s.delete(self._pattern(s, owner, pattern_id))

    # --- jobs ----------------------------------------------------------------------------

    def get_job(self, owner: str, job_id: str) -> x.JobView:
        with session_scope(self.db) as s:
            job = s.get(ExtractJob, job_id)
            if job is None or job.owner != owner:
                raise NotFound(f"Job {job_id} not found")
            return job_view(job, s.get(Job, job_id))

    def list_jobs(
        self,
        owner: str,
        *,
        page: int,
        limit: int,
        status: str | None,
        pattern_id: str | None,
    ) -> x.JobList:
        with session_scope(self.db) as s:
            query = select(ExtractJob).where(ExtractJob.owner == owner)
            if status:
                query = query.where(ExtractJob.status == status)
            if pattern_id:
                query = query.where(ExtractJob.pattern_id == pattern_id)
            total, rows = _page(s, query, ExtractJob, page=page, limit=limit)
            jobs = [job_summary(j) for j in rows]
        return x.JobList(jobs=jobs, pagination=_pagination(page, limit, int(total)))

    # --- webhooks ------------------------------------------------------------------------

    def create_webhook(self, owner: str, body: x.CreateWebhook) -> x.WebhookView:
        validate_url(body.url, "url")
        hook = ExtractWebhook(
            id=new_public_id("wh_", 12),
            owner=owner,
            url=body.url,
            events=list(dict.fromkeys(body.events)),
            secret=body.secret or "whsec_" + secrets.token_urlsafe(24),
            active=True,
            created_at=utcnow(),
        )
        with session_scope(self.db) as s:
            s.add(hook)
        return x.WebhookView(
            webhook_id=hook.id,
            url=hook.url,
            events=hook.events,  # type: ignore[arg-type]
            secret=hook.secret,
            active=True,
            created_at=iso(hook.created_at),
        )

    def list_webhooks(self, owner: str) -> x.WebhookList:
        with session_scope(self.db) as s:
            rows = s.scalars(
                select(ExtractWebhook)
                .where(ExtractWebhook.owner == owner)
                .order_by(ExtractWebhook.created_at)
            )
            return x.WebhookList(
                webhooks=[
                    x.WebhookView(
                        webhook_id=h.id,
                        url=h.url,
                        events=h.events,  # type: ignore[arg-type]
                        active=h.active,
                        created_at=iso(h.created_at),
                    )
                    for h in rows
                ]
            )

    def delete_webhook(self, owner: str, webhook_id: str) -> None:
        with session_scope(self.db) as s:
            hook = s.get(ExtractWebhook, webhook_id)
            if hook is None or hook.owner != owner:
                raise NotFound(f"Webhook {webhook_id} not found")
            s.delete(hook)

    # --- the worker's side ---------------------------------------------------------------

    def begin(self, job_id: str) -> ExtractJob | None:
        """Mark the job processing; None when it is gone or already finished."""
        with session_scope(self.db) as s:
            job = s.get(ExtractJob, job_id, with_for_update=True)
            if job is None or job.status in FINISHED:
                return None
            job.status = "processing"
            job.started_at = job.started_at or utcnow()
            s.flush()
            s.expunge(job)
            return job

    def complete(self, job_id: str, outcome: dict[str, Any], processing_time_ms: int) -> None:
        with session_scope(self.db) as s:
            job = s.get(ExtractJob, job_id, with_for_update=True)
            if job is None or job.status in FINISHED:
                return
            job.status = "completed"
            job.result = outcome["result"]
            job.field_metadata = outcome.get("field_metadata")
            job.confidence = float(outcome["confidence"])
            job.engine_used = outcome.get("engine")
            job.page_count = int(outcome.get("pages") or job.page_count)
            job.processing_time_ms = processing_time_ms
            job.finished_at = utcnow()
            s.flush()
            announce(s, job)

    def fail(self, job_id: str, code: str, message: str, processing_time_ms: int | None) -> None:
        with session_scope(self.db) as s:
            job = s.get(ExtractJob, job_id, with_for_update=True)
            if job is None or job.status in FINISHED:
                return
            job.status, job.error_code, job.error_message = "failed", code, message
            job.processing_time_ms = processing_time_ms
            job.finished_at = utcnow()
            s.flush()
            announce(s, job)


# --- views -------------------------------------------------------------------------------


def job_summary(job: ExtractJob) -> x.JobView:
    view = x.JobView(
        job_id=job.id,
        pattern_id=job.pattern_id,
        status=job.status,
        created_at=iso(job.created_at),  # type: ignore[arg-type]
    )
    if job.status == "completed":
        view.completed_at = iso(job.finished_at)
    elif job.status == "failed":
        view.failed_at = iso(job.finished_at)
    return view


def job_view(job: ExtractJob, queued: Job | None) -> x.JobView:
    """The job as the contract shows it for its status (and our additions)."""
    status = job.status
    code, message = job.error_code, job.error_message
    if status not in FINISHED and queued is not None and queued.status in ("failed", "cancelled"):
        # The platform gave up on it (its workers kept dying): the queue row says why.
        status, code, message = "failed", queued.error_code or "extraction_failed", queued.error
    view = x.JobView(
        job_id=job.id,
        pattern_id=job.pattern_id,
        status=status,  # type: ignore[arg-type]
        created_at=iso(job.created_at),
        metadata=job.meta,
        priority=job.priority,  # type: ignore[arg-type]
        page_count=job.page_count,
    )
    if status == "processing":
        view.progress = round(100 * (queued.progress if queued else 0.0))
        view.started_at = iso(job.started_at)
    elif status == "completed":
        assert job.result is not None
        view.result = render(job.result, job.spec.get("output_format", "json"))
        view.field_metadata = job.field_metadata
        view.confidence = job.confidence
        view.processing_time_ms = job.processing_time_ms
        view.engine = job.engine_used
        view.started_at = iso(job.started_at)
        view.completed_at = iso(job.finished_at)
    elif status == "failed":
        view.error = x.JobError(code=code or "extraction_failed", message=message or "failed")
        view.failed_at = iso(job.finished_at or (queued.finished_at if queued else None))
    return view


def announce(s: Session, job: ExtractJob) -> None:
    """Queue ``job.completed`` / ``job.failed`` to the owner's webhooks and the pattern's.

    Runs in the transaction that finishes the job; event ids are stable, so a retried
    finish never sends twice.
    """
    event = f"job.{job.status}"
    body = {
        "event": event,
        "timestamp": iso(job.finished_at),
        "data": job_view(job, None).model_dump(mode="json", exclude_unset=True),
    }
    targets: dict[str, str | None] = {}
    pattern_hook = job.spec.get("webhook_url")
    if pattern_hook:
        targets[pattern_hook] = None  # signed with the platform's default secret, if any
    for hook in s.scalars(
        select(ExtractWebhook).where(ExtractWebhook.owner == job.owner, ExtractWebhook.active)
    ):
        if event in hook.events:
            targets[hook.url] = hook.secret
    for url, secret in targets.items():
        webhooks.enqueue(
            s,
            event_id=f"extract.{event}:{job.id}",
            event_type=event,
            url=url,
            payload=body,
            secret=secret,
        )


def _pagination(page: int, limit: int, total: int) -> x.Pagination:
    return x.Pagination(current_page=page, total_pages=math.ceil(total / limit), total_count=total)


def _page(s: Session, query: Any, table: Any, *, page: int, limit: int) -> tuple[int, list[Any]]:
    """The total a listing matches, and its rows on ``page`` (newest first)."""
    total = s.scalar(select(func.count()).select_from(query.subquery())) or 0
    ordered = query.order_by(table.created_at.desc(), table.id)
    return total, list(s.scalars(ordered.limit(limit).offset((page - 1) * limit)))

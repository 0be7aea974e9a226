"""cutout service: model selection, sync and async runs, results, preferences.

Routers stay thin and call this; the job worker runs the same code for async
requests (``webhook_url``), so both paths give identical results.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import time
from collections import Counter, defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field
from sqlalchemy import select

from visionserve.errors import (
    BadRequest,
    NotFound,
    RateLimited,
    ServiceUnavailable,
    Unprocessable,
    VisionServeError,
    public_failure,
    remote_cause,
)
from visionserve.models.upscale.limits import check_output_size
from visionserve.platform.logging import request_ref
from visionserve.settings import Settings
from visionserve.store.blobs import BlobStore
from visionserve.store.db import session_scope
from visionserve.store.queue import JobQueue, active_jobs, enqueue
from visionserve.store.ratelimit import ConcurrencyLimiter
from visionserve.surfaces.cutout import schemas as s
from visionserve.surfaces.cutout.records import CutoutRun, CutoutSelection

log = logging.getLogger(__name__)

MAX_CONCURRENT_JOBS = 4  # per key (or client address), as the contract's rate-limit table says
MIME = {"png": "image/png", "webp": "image/webp"}
REQUESTS: dict[str, type[s.ImageInput]] = {
    "shotgun": s.RemoveBackgroundRequest,
    "process": s.ProcessRequest,
    "upscale": s.UpscaleRequest,
}
# AppContext.runtime key of the catalogue the app builder resolved.
CATALOGUE = "cutout.catalogue"


class CutoutCatalogue(BaseModel):
    """What the app builder enabled, known before any request: no remote call learns it."""

    # model_id -> display name of every background-removal model, in the builder's order.
    models: dict[str, str] = Field(default_factory=dict)
    # The upscale methods the ``upscale`` deployment serves.
    upscale_methods: list[str] = Field(default_factory=list)


@dataclass
class CutoutService:
    settings: Settings
    blobs: BlobStore
    handles: dict[str, Any]
    concurrency: ConcurrencyLimiter | None = None
    # From ``AppContext.runtime[CATALOGUE]``; None where no builder announced one.
    enabled: CutoutCatalogue | None = None
    # Async jobs' status is read through the queue.
    queue: JobQueue | None = None

    @property
    def graph(self) -> Any:
        return self.handles["cutout-graph"]

    # --- model selection -------------------------------------------------------------

    def catalogue(self) -> CutoutCatalogue:
        """The enabled models and upscale methods, as the app builder announced them."""
        if self.enabled is None:
            raise ServiceUnavailable("cutout: no model catalogue was given to this replica")
        return self.enabled

    async def select(self, requested: list[str], category: str | None) -> list[str]:
        """Resolve ``all`` / ``best`` / explicit ids against the enabled models."""
        names = self.catalogue().models
        if not names:
            raise Unprocessable("No background-removal model is enabled", code="processing_error")
        chosen: list[str] = []
        for item in requested or ["all"]:
            if item == "all":
                chosen.extend(names)
            elif item == "best":
                chosen.append(await asyncio.to_thread(self.best_model, list(names), category))
            elif item in names:
                chosen.append(item)
            else:
                raise BadRequest(
                    f"Unknown model {item!r}. Available: all, best, {', '.join(names)}",
                    details={"field": "include_models", "received": item, "valid": list(names)},
                )
        return list(dict.fromkeys(chosen))

    def check_method(self, method: str) -> None:
        """A 400 naming the valid methods, before any model runs."""
        methods = self.catalogue().upscale_methods
        if method not in methods:
            raise BadRequest(
                f"Unknown upscale method {method!r}. Available: {', '.join(methods)}",
                details={"field": "method", "received": method, "valid": methods},
            )

    def best_model(self, enabled: list[str], category: str | None) -> str:
        """The model users pick most for ``category`` (else overall, else the first)."""
        prefs = self.preferences()
        for rows in (prefs.by_category.get(category or "", []), prefs.models):
            ranked = [p for p in rows if p.model_id in enabled and p.selections > 0]
            if ranked:
                return max(ranked, key=lambda p: (p.win_rate, p.selections)).model_id
        return enabled[0]

    def check_output(self, req: s.ImageInput, width: int, height: int) -> None:
        """Refuse, before any work, a request whose output is over ``limits.max_output_pixels``.

        An upscale's output is ``scale_factor**2`` times its input; so is each cut-out
        of /process (a cut-out keeps its input's size). Background removal alone never
        grows an image.

        Raises:
            PayloadTooLarge: The contract's 413 ``image_too_large``; ``details`` holds
                ``max_output_pixels`` and the output size asked for.
        """
        if isinstance(req, s.UpscaleRequest):
            scale = req.scale_factor
        elif isinstance(req, s.ProcessRequest):
            scale = req.upscale_factor
        else:
            return
        check_output_size(width, height, scale, self.settings.limits.max_output_pixels)

    # --- running -----------------------------------------------------------------------

    async def run(self, kind: str, job_id: str, pixels: Any, req: Any, owner: str) -> Any:
        """One request of ``kind`` (shotgun, process, upscale) on decoded pixels."""
        self.check_output(req, pixels.shape[1], pixels.shape[0])
        if kind == "shotgun":
            return await self.remove_background(job_id, pixels, req, owner)
        if kind == "process":
            return await self.process(job_id, pixels, req, owner)
        return await self.upscale(job_id, pixels, req, owner)

    async def remove_background(
        self, job_id: str, pixels: Any, req: s.RemoveBackgroundRequest, owner: str
    ) -> s.RemoveBackgroundResponse:
        started = time.perf_counter()
        model_ids = await self.select(req.include_models, req.image_category)
        async with self._slot(owner):
            raw = await self.graph.shotgun.remote(
                pixels, model_ids, req.output_format, req.timeout_s
            )
        results = [
            s.ModelResult(
                model_id=r["model_id"],
                model_name=r.get("model_name"),
                status=r["status"],
                error=r.get("error"),
                processing_time_ms=r["processing_time_ms"],
                cost_usd=r.get("cost_usd", 0.0),
                **await self._publish(job_id, r, req.output_format, req.return_base64),
            )
            for r in raw
        ]
        outcomes = {r.model_id: r.status for r in results}
        await self._record(job_id, "shotgun", owner, req.image_category, outcomes)
        return s.RemoveBackgroundResponse(
            job_id=job_id,
            status=_overall(
                {r.model_id: r.error for r in results if r.status != "success"}, len(results)
            ),
            processing_time_ms=_ms(started),
            results=results,
            total_cost_usd=round(sum(r.cost_usd for r in results), 6),
        )

    async def process(
        self, job_id: str, pixels: Any, req: s.ProcessRequest, owner: str
    ) -> s.ProcessResponse:
        started = time.perf_counter()
        self.check_method(req.method)
        model_ids = await self.select(req.bg_models, req.image_category)
        async with self._slot(owner):
            raw = await self.graph.process.remote(
                pixels, model_ids, req.upscale_factor, req.method, req.output_format, req.timeout_s
            )
        h, w = pixels.shape[:2]
        results = []
        for r in raw:
            ok = r["status"] == "success"
            bg_failed = r.get("code") in ("bg_removal_failed", "timeout")
            cutout = r.get("cutout")
            results.append(
                s.ProcessResult(
                    model_id=r["model_id"],
                    model_name=r.get("model_name"),
                    bg_removal_status="error" if bg_failed else "success",
                    upscale_status="success" if ok else ("skipped" if bg_failed else "error"),
                    input_dimensions=s.Dimensions(width=w, height=h),
                    output_dimensions=s.Dimensions(width=cutout.width, height=cutout.height)
                    if ok
                    else None,
                    error=r.get("error"),
                    processing_time_ms=r["processing_time_ms"],
                    cost_usd=r.get("cost_usd", 0.0),
                    **await self._publish(job_id, r, req.output_format, req.return_base64),
                )
            )
        outcomes = {r.model_id: r.upscale_status for r in results}
        await self._record(job_id, "process", owner, req.image_category, outcomes)
        return s.ProcessResponse(
            job_id=job_id,
            status=_overall(
                {r.model_id: r.error for r in results if r.upscale_status != "success"},
                len(results),
            ),
            processing_time_ms=_ms(started),
            results=results,
            total_cost_usd=round(sum(r.cost_usd for r in results), 6),
        )

    async def upscale(
        self, job_id: str, pixels: Any, req: s.UpscaleRequest, owner: str
    ) -> s.UpscaleResponse:
        started = time.perf_counter()
        self.check_method(req.method)
        async with self._slot(owner):
            try:
                cutout = await self.handles["upscale"].upscale.remote(
                    pixels, req.scale_factor, req.method, req.output_format, req.preserve_alpha
                )
            except Exception as exc:
                raise _unwrap(exc, job_id) from exc
        h, w = pixels.shape[:2]
        published = await self._publish(
            job_id,
            {"model_id": "upscale", "status": "success", "cutout": cutout},
            req.output_format,
            req.return_base64,
        )
        return s.UpscaleResponse(
            job_id=job_id,
            input_dimensions=s.Dimensions(width=w, height=h),
            output_dimensions=s.Dimensions(width=cutout.width, height=cutout.height),
            scale_factor=req.scale_factor,
            alpha_preserved=req.preserve_alpha and pixels.ndim == 3 and pixels.shape[2] == 4,
            method=req.method,
            processing_time_ms=_ms(started),
            **published,
        )

    def _slot(self, owner: str) -> Any:
        if self.concurrency is None:
            return contextlib.nullcontext()
        return self.concurrency.concurrency(f"cutout:{owner}", MAX_CONCURRENT_JOBS)

    async def _publish(
        self, job_id: str, raw: dict[str, Any], fmt: str, inline: bool
    ) -> dict[str, Any]:
        """image_base64 (unless turned off) and a signed image_url for a good result."""
        cutout = raw.get("cutout")
        if raw["status"] != "success" or cutout is None or cutout.encoded is None:
            return {}
        key = f"cutout/results/{job_id}/{raw['model_id']}.{fmt}"
        await asyncio.to_thread(self.blobs.put, key, cutout.encoded, MIME[fmt])
        url = await asyncio.to_thread(self.blobs.url, key)
        out: dict[str, Any] = {"image_url": url}
        if inline:
            out["image_base64"] = base64.b64encode(cutout.encoded).decode()
        return out

    async def _record(
        self, job_id: str, kind: str, owner: str, category: str | None, outcomes: Mapping[str, str]
    ) -> None:
        """Which models gave a good result: what /log-selection is validated against."""

        def write() -> None:
            with session_scope(self.settings.database_url) as db:
                db.merge(
                    CutoutRun(
                        id=job_id,
                        kind=kind,
                        owner=owner,
                        image_category=category,
                        outcomes={
                            m: "success" if st == "success" else "error"
                            for m, st in outcomes.items()
                        },
                    )
                )

        await asyncio.to_thread(write)

    # --- async jobs --------------------------------------------------------------------

    def submit(
        self, kind: str, job_id: str, image: bytes, req: s.ImageInput, owner: str
    ) -> s.AcceptedResponse:
        """Store the input, commit the job row (the 202 comes after), return its status URL."""
        with session_scope(self.settings.database_url) as db:
            running = active_jobs(db, surface="cutout", owner_key_id=owner)
            if running >= MAX_CONCURRENT_JOBS:
                raise RateLimited(
                    f"Too many concurrent jobs (max {MAX_CONCURRENT_JOBS})",
                    code="rate_limit_exceeded",
                    headers={"Retry-After": "5"},
                )
            input_key = f"cutout/inputs/{job_id}"
            self.blobs.put(input_key, image)
            payload = req.model_dump(
                exclude={"image", "image_url", "webhook_url", "webhook_secret"}
            )
            payload.update(input_key=input_key, owner=owner)
            enqueue(
                db,
                surface="cutout",
                kind=f"cutout.{kind}",
                payload=payload,
                settings=self.settings.jobs,
                job_id=job_id,
                owner_key_id=owner,
                webhook_url=req.webhook_url,
                webhook_secret=req.webhook_secret,
            )
        return s.AcceptedResponse(job_id=job_id, status_url=f"/cutout/jobs/{job_id}")

    def job(self, job_id: str) -> s.JobStatusResponse:
        assert self.queue is not None
        try:
            job = self.queue.get(job_id)
        except NotFound:
            raise NotFound(f"Job {job_id} not found") from None
        if job.surface != "cutout":
            raise NotFound(f"Job {job_id} not found")
        return s.JobStatusResponse(
            job_id=job.id,
            kind=job.kind.removeprefix("cutout."),
            status=job.status,  # type: ignore[arg-type]
            progress=job.progress,
            created_at=_iso(job.created_at),
            finished_at=_iso(job.finished_at) if job.finished_at else None,
            result=job.result,
            error=job.error,
            error_category=job.error_category,
            retryable=job.error_retryable,
        )

    # --- preferences -------------------------------------------------------------------

    def log_selection(self, req: s.LogSelectionRequest) -> s.LogSelectionResponse:
        with session_scope(self.settings.database_url) as db:
            run = db.get(CutoutRun, req.job_id)
            if run is None:
                raise NotFound(f"Job {req.job_id} not found", details={"field": "job_id"})
            if run.outcomes.get(req.selected_model_id) != "success":
                offered = sorted(m for m, st in run.outcomes.items() if st == "success")
                raise BadRequest(
                    f"Model {req.selected_model_id!r} has no result in job {req.job_id}; "
                    f"choose one of: {', '.join(offered)}",
                    details={
                        "field": "selected_model_id",
                        "received": req.selected_model_id,
                        "valid": offered,
                    },
                )
            row = CutoutSelection(
                run_id=run.id,
                selected_model_id=req.selected_model_id,
                image_category=req.image_category or run.image_category,
                notes=req.notes,
            )
            db.add(row)
            db.flush()
            return s.LogSelectionResponse(selection_id=row.id)

    def preferences(self) -> s.PreferencesResponse:
        """Win rate = times picked / times offered with a good result, overall and per category."""
        with session_scope(self.settings.database_url) as db:
            rows = db.execute(
                select(
                    CutoutSelection.selected_model_id,
                    CutoutSelection.image_category,
                    CutoutRun.outcomes,
                ).join(CutoutRun, CutoutRun.id == CutoutSelection.run_id)
            ).all()
        wins: dict[str, Counter[str]] = defaultdict(Counter)
        offered: dict[str, Counter[str]] = defaultdict(Counter)
        for picked, category, outcomes in rows:
            for scope in ("", category or ""):
                wins[scope][picked] += 1
                for model_id, status in outcomes.items():
                    if status == "success":
                        offered[scope][model_id] += 1
                if not category:
                    break

        def table(scope: str) -> list[s.ModelPreference]:
            return sorted(
                (
                    s.ModelPreference(
                        model_id=m,
                        selections=wins[scope][m],
                        offered=n,
                        win_rate=round(wins[scope][m] / n, 4) if n else 0.0,
                    )
                    for m, n in offered[scope].items()
                ),
                key=lambda p: (-p.win_rate, -p.selections, p.model_id),
            )

        return s.PreferencesResponse(
            total_selections=len(rows),
            models=table(""),
            by_category={c: table(c) for c in offered if c},
        )


def _overall(errors: dict[str, str | None], total: int) -> Any:
    """completed / partial, or the contract's 422 when every model failed."""
    if len(errors) == total:
        raise Unprocessable(
            "All models failed", code="processing_error", details={"errors": errors}
        )
    return "partial" if errors else "completed"


def _unwrap(exc: BaseException, job_id: str) -> VisionServeError:
    """A model deployment's VisionServeError as raised there (Serve wraps it).

    Anything else shows only its public face; the log gets the exception.
    """
    cause = remote_cause(exc)
    if isinstance(cause, VisionServeError):
        return cause
    return public_failure(exc, ref=request_ref(f"job {job_id}"), logger=log).error()


def _ms(started: float) -> int:
    return round((time.perf_counter() - started) * 1000)


def _iso(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")

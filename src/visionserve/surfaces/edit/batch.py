"""COS -> COS batches: the pure per-image work and the summary the callback reports.

:class:`EditImages` is the Ray Data ``map_batches`` callable (one per actor: it loads
the local models once) and the body of the sequential loop that serves as the
baseline and as the runner where no Ray is (tests). The job handler plans the prompt
once, lists the input bucket, hands a :class:`BatchSpec` to a :class:`BatchRunner`
and turns the outcomes into the contract's callback with :func:`summarise`.
"""

from __future__ import annotations

import asyncio
import logging
import posixpath
import time
from collections.abc import Callable, Iterable
from typing import Any, Literal, Protocol

from pydantic import BaseModel

from visionserve.errors import public_failure
from visionserve.models.edit import LocalModelOps, Plan
from visionserve.models.edit.engines import LocalEngines
from visionserve.platform.images import load_image
from visionserve.settings import Settings
from visionserve.surfaces.edit import cos
from visionserve.surfaces.edit.editing import Editor, generative_backend, upscale_method
from visionserve.surfaces.edit.schemas import MAX_ERRORS

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]


class BatchSpec(BaseModel):
    """Everything a batch's workers need; plain data, so it crosses to Ray workers."""

    job_id: str
    prompt: str
    plan: Plan
    keys: list[str]  # input object keys, images only
    output_prefix: str  # ends with "/"
    settings: dict[str, Any]  # Settings.model_dump(mode="json") of the cluster


class ItemOutcome(BaseModel):
    key: str
    status: Literal["processed", "fallback_local", "failed"]
    output_key: str | None = None
    message: str | None = None  # the error, or the fallback note


class BatchRunner(Protocol):
    """Runs every key of a spec; the cluster's runner is a Ray Data job."""

    async def run(self, spec: BatchSpec, progress: Progress) -> list[ItemOutcome]: ...


class EditImages:
    """Edits a batch of input keys and writes each result to the output bucket.

    Args:
        spec: The batch (a dict crosses Ray's boundary as well as the model).
        threads: Intra-op threads of each ONNX model: 1 in a pool of actors (one core
            each), None (every core) for a lone sequential loop.
    """

    def __init__(self, spec: BatchSpec | dict[str, Any], threads: int | None = 1) -> None:
        self.spec = BatchSpec.model_validate(spec)
        self.settings = Settings.model_validate(self.spec.settings)
        edit = self.settings.edit
        self.inputs = cos.input_bucket(self.settings)
        self.outputs = cos.output_bucket(self.settings)
        home = self.settings.model_dir
        models = LocalModelOps(
            home, edit.bg_model, upscaler=upscale_method(self.settings), threads=threads
        )
        self.editor = Editor(
            models,
            max_output_pixels=self.settings.limits.max_output_pixels,
            generative=generative_backend(self.settings),
            engines=LocalEngines(home, threads=threads),
        )

    def __call__(self, batch: dict[str, Any]) -> dict[str, list[str]]:
        """Ray Data's batch format: ``{"key": [...]}`` in, one JSON outcome per key out."""
        keys = [str(k) for k in batch["key"]]
        return {"outcome": [self.one(k).model_dump_json() for k in keys]}

    def one(self, key: str) -> ItemOutcome:
        """Edit one object; any failure is this image's, never the batch's."""
        name = posixpath.basename(key)
        try:
            with cos.storage("get_object"):
                data = self.inputs.get(key)
            image = load_image(data, self.settings)
            edited = asyncio.run(self.editor.edit(self.spec.plan, self.spec.prompt, image))
            out_key = self._output_key(key, edited.format)
            with cos.storage("put_object"):
                self.outputs.put(out_key, edited.encoded, edited.mime_type)
        except Exception as exc:
            failure = public_failure(exc, ref=f"batch {self.spec.job_id} {key}", logger=log)
            return ItemOutcome(key=key, status="failed", message=f"{name}: {failure.message}")
        if edited.route == "fallback_local":
            return ItemOutcome(
                key=key,
                status="fallback_local",
                output_key=out_key,
                message=f"{name}: {edited.note}",
            )
        return ItemOutcome(key=key, status="processed", output_key=out_key)

    def _output_key(self, key: str, fmt: str) -> str:
        """``<output_prefix>/<job>/<sub/folders>/<stem>_modified.<ext>``: no two inputs collide."""
        relative = key.removeprefix(self.settings.edit.input_prefix).lstrip("/")
        folder = posixpath.dirname(relative)
        name = cos.result_name(posixpath.basename(key), fmt)
        return self.spec.output_prefix + (f"{folder}/{name}" if folder else name)


class SequentialRunner:
    """One :class:`EditImages` over every key in a loop (the original's design).

    The baseline of the batch benchmark, and the runner where there is no Ray.
    """

    async def run(self, spec: BatchSpec, progress: Progress) -> list[ItemOutcome]:
        def work() -> list[ItemOutcome]:
            editor = EditImages(spec, threads=None)
            done: list[ItemOutcome] = []
            for key in spec.keys:
                done.append(editor.one(key))
                progress(len(done), len(spec.keys))
            return done

        return await asyncio.to_thread(work)


def list_inputs(settings: Settings) -> tuple[list[str], list[str]]:
    """The image keys under the input prefix, and the other keys (skipped), sorted.

    Raises:
        Unprocessable: More images than ``edit.max_batch_files``.
    """
    from visionserve.errors import Unprocessable

    with cos.storage("list_objects"):
        keys = cos.input_bucket(settings).list(settings.edit.input_prefix)
    images = [k for k in keys if cos.is_image_name(k)]
    limit = settings.edit.max_batch_files
    if len(images) > limit:
        raise Unprocessable(
            f"{len(images)} images under the input prefix; a batch takes at most {limit} "
            "(edit.max_batch_files)",
            code="too_many_files",
        )
    return images, [k for k in keys if not cos.is_image_name(k)]


def summarise(outcomes: Iterable[ItemOutcome], total: int, started: float) -> dict[str, Any]:
    """The contract's counts: processed, failed, fallback_local and up to 20 errors."""
    items = list(outcomes)
    processed = sum(o.status == "processed" for o in items)
    fallback = sum(o.status == "fallback_local" for o in items)
    failed = sum(o.status == "failed" for o in items)
    errors = [o.message for o in items if o.message][:MAX_ERRORS]
    return {
        "status": "completed" if not (failed or fallback) else "completed_with_errors",
        "total_files": total,
        "processed": processed,
        "failed": failed,
        "fallback_local": fallback,
        "duration_seconds": round(time.time() - started, 3),
        "total_files_processed": processed + fallback,
        "errors": errors,
    }

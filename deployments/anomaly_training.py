"""Anomaly model training as a Ray generator task, and the launcher the job worker uses.

The durable ``inspect.train`` job (``visionserve.surfaces.inspect.jobs``) runs each
training through :class:`RayTrainingLauncher`, which starts :func:`train_task` with
the resources the settings ask for and reads its stream: ``progress`` events while
it runs, then one ``result``. Cancelling the job cancels the task with
``force=True``, which ends its worker process: a training run really stops,
whatever anomalib is doing at that moment.

The task fetches the images itself from the blob store and uploads the exports
there, so nothing large passes through the job worker or the object store.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import queue
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import ray

log = logging.getLogger(__name__)

# glibc returns big freed blocks to the OS at once instead of keeping arenas that
# grow run after run (PatchCore's coreset search allocates a large tensor per step).
TRAINING_ENV = {
    "MALLOC_MMAP_THRESHOLD_": "131072",
    "HF_HUB_OFFLINE": "1",
    "TORCHVISION_WARN_WHEN_EXTENSION_LOADING_FAILS": "0",
}
# Progress when the exports are uploaded: training and export report below it.
UPLOAD_AT = 0.98
#: Blob sub-folder of each export format under a model's prefix.
FORMATS = ("openvino", "onnx", "pytorch")


def training_options(settings: Any) -> dict[str, Any]:
    """``.options()`` of the task from the inspect settings."""
    return {
        "num_cpus": settings.inspect.train_num_cpus,
        "num_gpus": settings.inspect.train_num_gpus,
        "max_retries": 0,  # the durable job decides about retries
        "runtime_env": {"env_vars": TRAINING_ENV},
    }


# max_calls=1: a fresh worker per run, so a finished training hands its ~1 GB back.
@ray.remote(num_returns="streaming", max_calls=1)
def train_task(snapshot: dict[str, Any], spec: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Train ``spec`` and yield ``{"type": "progress", ...}`` events, then the result.

    Args:
        snapshot: The cluster's settings (``Settings.model_dump(mode="json")``).
        spec: ``architecture``, ``parameters``, ``blob_prefix`` and ``media``: a list of
            ``{"id", "label", "image_key", "mask_key"}``.
    """
    from visionserve.settings import Settings
    from visionserve.store.blobs import make_blob_store

    settings = Settings.model_validate(snapshot)
    blobs = make_blob_store(settings)
    with tempfile.TemporaryDirectory(prefix="visionserve-train-") as tmp:
        root = Path(tmp)
        samples = _download(blobs, spec["media"], root / "media")
        events: queue.Queue[dict[str, Any]] = queue.Queue()
        outcome: dict[str, Any] = {}

        def report(fraction: float, metrics: dict[str, Any]) -> None:
            # Training and export fill 0..0.98; the upload below is the last step.
            scaled = min(fraction, 1.0) * UPLOAD_AT
            events.put({"type": "progress", "progress": scaled, "metrics": dict(metrics)})

        def run() -> None:
            try:
                outcome["result"] = _train(settings, spec, samples, root / "work", report)
            except BaseException as exc:
                outcome["error"] = exc
            finally:
                events.put({"type": "done"})

        # Training runs beside the generator so progress streams while Lightning works.
        worker = threading.Thread(target=run, name="anomaly-training", daemon=True)
        worker.start()
        while (event := events.get())["type"] != "done":
            yield event
        worker.join()
        if "error" in outcome:
            raise outcome["error"]
        result = outcome["result"]
        yield {"type": "progress", "progress": UPLOAD_AT, "metrics": {"stage": "upload"}}
        files = _upload(blobs, spec["blob_prefix"], result.exports)
        yield {
            "type": "result",
            "metrics": result.metrics,
            "input_size": list(result.input_size),
            "seconds": result.seconds,
            "files": files,
        }


def resource_shortfall(needed: dict[str, float], available: dict[str, float]) -> str | None:
    """Why a task that needs ``needed`` cannot be scheduled now, or None when it fits."""
    short = [
        f"{v:g} {k} ({available.get(k, 0.0):g} free)"
        for k, v in needed.items()
        if v > 0 and available.get(k, 0.0) + 1e-9 < v
    ]
    if not short:
        return None
    return (
        f"needs {', '.join(short)}; Serve replicas hold the rest of the cluster: "
        "training starts when one scales down (or lower the replicas' reservations)"
    )


class RayTrainingLauncher:
    """``visionserve.surfaces.inspect.jobs.TrainingLauncher`` on Ray: one task per run."""

    # How often a training that has not started yet looks at the cluster's free resources.
    WAIT_POLL_S = 3.0

    def __init__(self, settings: Any) -> None:
        self.settings = settings

    async def run(
        self, spec: dict[str, Any], progress: Callable[[float, dict[str, Any]], None]
    ) -> dict[str, Any]:
        options = training_options(self.settings)
        stream = train_task.options(**options).remote(self.settings.model_dump(mode="json"), spec)
        started = asyncio.Event()
        needed = {"CPU": options["num_cpus"], "GPU": options["num_gpus"]}
        watcher = asyncio.create_task(self._report_waiting(needed, started, progress))
        result: dict[str, Any] = {}
        try:
            async for ref in stream:  # type: ignore[attr-defined]  # a streaming generator
                event = await ref
                started.set()
                if event["type"] == "progress":
                    progress(event["progress"], event["metrics"])
                else:
                    result = event
        except asyncio.CancelledError:
            ray.cancel(stream, force=True)  # ends the worker process: training really stops
            raise
        finally:
            watcher.cancel()
        return result

    async def _report_waiting(
        self,
        needed: dict[str, float],
        started: asyncio.Event,
        progress: Callable[[float, dict[str, Any]], None],
    ) -> None:
        """Until the task streams its first event, say when it waits for resources."""
        while not started.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(started.wait(), self.WAIT_POLL_S)
            if started.is_set():
                return
            free = await asyncio.to_thread(ray.available_resources)
            reason = resource_shortfall(needed, free)
            if reason:
                progress(0.0, {"stage": "waiting_for_resources", "reason": reason})


def _download(blobs: Any, media: list[dict[str, Any]], folder: Path) -> list[Any]:
    from visionserve.models.anomaly.training import Sample

    folder.mkdir(parents=True)
    samples = []
    for item in media:
        image = folder / f"{item['id']}{Path(item['image_key']).suffix}"
        image.write_bytes(blobs.get(item["image_key"]))
        mask = None
        if item.get("mask_key"):
            mask = folder / f"{item['id']}.mask.png"
            mask.write_bytes(blobs.get(item["mask_key"]))
        samples.append(Sample(path=image, label=item["label"], mask=mask))
    return samples


def _train(settings: Any, spec: dict[str, Any], samples: list[Any], work: Path, report: Any) -> Any:
    from visionserve.models.anomaly.training import split, train

    train_images, val = split(samples, holdout=settings.inspect.holdout)
    return train(
        spec["architecture"],
        spec["parameters"],
        train_images,
        val,
        work,
        Path(settings.model_home),
        progress=report,
        # Ray sets OMP_NUM_THREADS from the (small) CPU reservation: say what we mean.
        threads=settings.inspect.train_threads or os.cpu_count() or 1,
    )


def _upload(blobs: Any, prefix: str, exports: dict[str, Path]) -> list[str]:
    keys = []
    for fmt, folder in exports.items():
        for path in sorted(Path(folder).rglob("*")):
            if path.is_file():
                key = f"{prefix}{fmt}/{path.relative_to(folder).as_posix()}"
                blobs.put(key, path.read_bytes())
                keys.append(key)
    return keys

"""COS -> COS edit batches as a Ray Data job, and the runner the job worker uses.

The durable ``edit.batch`` job (``visionserve.surfaces.edit.jobs``) plans the prompt
once, lists the input bucket and hands the keys to :class:`RayEditBatch`, which runs
:func:`run_pipeline`: the keys become a dataset and the pure
:class:`~visionserve.surfaces.edit.batch.EditImages` is the ``map_batches``
callable in a pool of actors (each loads bg removal, waifu2x, style and face models
once, one ONNX thread each). Workers read and write the buckets themselves, so no
image passes through the job worker. ``jobs/edit_batch.py`` submits the same
pipeline with ``ray job submit``.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable

from visionserve.errors import JobCancelled
from visionserve.settings import Settings
from visionserve.surfaces.edit.batch import BatchSpec, EditImages, ItemOutcome

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]


def run_pipeline(
    spec: BatchSpec,
    progress: Progress | None = None,
    *,
    actors: int = 2,
    batch_size: int = 2,
    actor_cpus: float = 1.0,
) -> list[ItemOutcome]:
    """Edit every key of ``spec`` on the connected Ray cluster; one outcome per key.

    Args:
        spec: The batch.
        progress: Called with (done, total) as results arrive.
        actors: Size of the actor pool (one core each is what pays).
        batch_size: Keys per ``map_batches`` call.
        actor_cpus: CPUs each actor reserves (below 1 where Serve replicas hold the rest).
    """
    import ray

    total = len(spec.keys)
    if not total:
        return []
    # One block per batch, so every actor gets work from the start.
    dataset = ray.data.from_items(
        [{"key": k} for k in spec.keys], override_num_blocks=max(1, -(-total // batch_size))
    )
    edited = dataset.map_batches(
        EditImages,
        fn_constructor_kwargs={"spec": spec.model_dump(mode="json"), "threads": 1},
        batch_size=batch_size,
        compute=ray.data.ActorPoolStrategy(size=min(actors, total)),
        num_cpus=actor_cpus,
        batch_format="numpy",
    )
    outcomes: list[ItemOutcome] = []
    for row in edited.iter_rows():
        outcomes.append(ItemOutcome.model_validate_json(row["outcome"]))
        if progress is not None:
            progress(len(outcomes), total)
    return outcomes


class RayEditBatch:
    """``visionserve.surfaces.edit.batch.BatchRunner`` on Ray Data."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings.edit

    async def run(self, spec: BatchSpec, progress: Progress) -> list[ItemOutcome]:
        """Run the pipeline in a thread; cancelling this stops it at the next result."""
        stop = threading.Event()

        def report(done: int, total: int) -> None:
            if stop.is_set():  # leaving the loop shuts the dataset's executor down
                raise JobCancelled("the batch was cancelled")
            progress(done, total)

        try:
            return await asyncio.to_thread(
                run_pipeline,
                spec,
                report,
                actors=self.settings.batch_actors,
                batch_size=self.settings.batch_size,
                actor_cpus=self.settings.batch_actor_cpus,
            )
        except asyncio.CancelledError:
            stop.set()
            raise


__all__ = ["EditImages", "RayEditBatch", "run_pipeline"]

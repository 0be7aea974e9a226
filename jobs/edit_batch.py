"""Edit every image under the input bucket/prefix with one prompt (COS -> COS, Ray Data).

    ray job submit --address http://HEAD:8265 --working-dir . -- \\
        python -m jobs.edit_batch --prompt "make it 20% brighter, then remove the background"

The same pipeline the ``edit.batch`` job runs in the cluster (``deployments/edit_batch.py``):
the prompt is planned once here (a prompt no local operation covers fails before any
image is read), then the pure ``EditImages`` class is the ``map_batches`` callable in a
pool of actors. Buckets, prefixes and the S3 endpoint come from the VISIONSERVE_*
settings of the submitting process (``VISIONSERVE_EDIT__INPUT_BUCKET``, ...) or the
flags, and reach the workers inside the batch spec (workers of a ``ray start`` cluster
do not inherit the driver's environment). Prints the contract's batch summary as JSON.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
import uuid
from typing import Any

from deployments.edit_batch import run_pipeline
from visionserve.errors import VisionServeError
from visionserve.settings import Settings, get_settings

log = logging.getLogger("jobs.edit_batch")


def run(settings: Settings, prompt: str, job_id: str | None = None) -> dict[str, Any]:
    """Plan, list, edit, summarise: the contract's batch callback body."""
    from visionserve.models.edit import Planner
    from visionserve.models.embedding import Embedder
    from visionserve.surfaces.edit.batch import BatchSpec, list_inputs, summarise
    from visionserve.surfaces.edit.cos import join_prefix
    from visionserve.surfaces.edit.editing import check_plan, generative_backend

    started = time.time()
    job_id = job_id or str(uuid.uuid4())
    edit = settings.edit
    summary: dict[str, Any] = {
        "status": "failed",
        "job_id": job_id,
        "total_files": 0,
        "processed": 0,
        "failed": 0,
        "fallback_local": 0,
        "duration_seconds": 0.0,
        "total_files_processed": 0,
        "output_bucket": edit.output_bucket,
        "output_prefix": join_prefix(edit.output_prefix, job_id),
        "errors": [],
    }
    try:
        plan = Planner(Embedder()).plan(prompt)
        check_plan(plan, generative_backend(settings))
        keys, skipped = list_inputs(settings)
        if skipped:
            log.info("%d non-image objects skipped", len(skipped))
        spec = BatchSpec(
            job_id=job_id,
            prompt=prompt,
            plan=plan,
            keys=keys,
            output_prefix=summary["output_prefix"],
            settings=settings.model_dump(mode="json"),
        )
        outcomes = run_pipeline(
            spec,
            lambda done, total: log.info("%d/%d images", done, total),
            actors=edit.batch_actors,
            batch_size=edit.batch_size,
            actor_cpus=edit.batch_actor_cpus,
        )
    except VisionServeError as exc:
        summary.update(error=exc.message, duration_seconds=round(time.time() - started, 3))
        return summary
    return {**summary, **summarise(outcomes, len(keys), started)}


def main(argv: list[str] | None = None) -> int:
    base = get_settings()
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--prompt", required=True)
    parser.add_argument("--job-id", default=None, help="Results go under <output_prefix>/<id>/")
    parser.add_argument("--input-bucket", default=base.edit.input_bucket)
    parser.add_argument("--input-prefix", default=base.edit.input_prefix)
    parser.add_argument("--output-bucket", default=base.edit.output_bucket)
    parser.add_argument("--output-prefix", default=base.edit.output_prefix)
    parser.add_argument("--actors", type=int, default=base.edit.batch_actors)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    edit = base.edit.model_copy(
        update={
            "input_bucket": args.input_bucket,
            "input_prefix": args.input_prefix,
            "output_bucket": args.output_bucket,
            "output_prefix": args.output_prefix,
            "batch_actors": args.actors,
        }
    )
    settings = base.model_copy(update={"edit": edit})
    import ray

    ray.init(address="auto" if os.environ.get("RAY_ADDRESS") else None, ignore_reinit_error=True)
    summary = run(settings, args.prompt, args.job_id)
    sys.stdout.write(json.dumps(summary) + "\n")
    return 0 if summary["status"] != "failed" else 1


if __name__ == "__main__":
    raise SystemExit(main())

"""Train an anomaly model of an inspect project as a Ray job.

    ray job submit --address http://HEAD:8265 -- \\
        python -m jobs.anomaly_train --project <project id> --architecture padim --name line-3

The model and its job are registered exactly as ``POST /projects/{id}/train`` registers
them (same validation, same ``inspect.train`` job, same training task), with one
difference: the job is committed already claimed by this driver, which runs it here.
``GET /inspect/api/jobs/{id}`` shows its progress and metrics while it runs and the
log has a line per step. Should the driver die, its lease expires and the cluster's
job worker takes the training over.

Settings (database, blob store) come from the VISIONSERVE_* environment of the driver:
on a ``ray start`` cluster pass them with ``--runtime-env-json '{"env_vars": {...}}'``
or set them on the nodes. Prints the finished job as JSON; exits 1 when it failed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
import uuid
from typing import Any

log = logging.getLogger("jobs.anomaly_train")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--project", required=True, help="The inspect project id")
    parser.add_argument("--architecture", required=True, help="GET /trainable-models lists them")
    parser.add_argument("--name", required=True, help="The model's name")
    parser.add_argument(
        "--parameters", default="{}", help="JSON object, e.g. '{\"image_size\": 128}'"
    )
    parser.add_argument("--snapshot", default=None, help="Train on a snapshot's media only")
    return parser.parse_args(argv)


async def train(args: argparse.Namespace) -> dict[str, Any]:
    from deployments.anomaly_training import RayTrainingLauncher
    from visionserve.platform.context import build_context
    from visionserve.platform.worker import Worker, load_job_modules
    from visionserve.settings import get_settings
    from visionserve.store.queue import Claimed
    from visionserve.surfaces.inspect.jobs import TRAINING_LAUNCHER
    from visionserve.surfaces.inspect.model_service import ModelService
    from visionserve.surfaces.inspect.schemas import TrainRequest

    settings = get_settings()
    load_job_modules(["visionserve.surfaces.inspect.jobs"])
    ctx = build_context(settings, runtime={TRAINING_LAUNCHER: RayTrainingLauncher(settings)})
    submission = os.environ.get("RAY_JOB_SUBMISSION_ID") or uuid.uuid4().hex[:12]
    worker = Worker(ctx, worker_id=f"ray-job:{submission}:{os.getpid()}")
    request = TrainRequest(
        model_name=args.name,
        architecture=args.architecture,
        parameters=json.loads(args.parameters),
        snapshot_id=args.snapshot,
    )
    service = ModelService(settings, ctx.blobs, ctx.queue)
    accepted = await asyncio.to_thread(
        service.start_training, args.project, request, claimed_by=worker.worker_id
    )
    log.info("job %s: training model %s (%s)", accepted.job_id, accepted.model_id, args.name)
    # The row as committed, already ours: run it as a worker of the cluster would.
    await worker.run_claimed(Claimed.of(ctx.queue.get(accepted.job_id)))
    return service.get_job(accepted.job_id).model_dump(mode="json")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from visionserve.errors import VisionServeError
    from visionserve.platform.logging import configure_logging

    configure_logging()
    import ray

    ray.init(address="auto" if os.environ.get("RAY_ADDRESS") else None, ignore_reinit_error=True)
    try:
        job = asyncio.run(train(args))
    except VisionServeError as exc:  # refused before any work: unknown project, parameters
        sys.stderr.write(f"{exc.code}: {exc.message}\n")
        return 2
    sys.stdout.write(json.dumps(job) + "\n")
    return 0 if job["status"] == "completed" else 1


if __name__ == "__main__":
    raise SystemExit(main())

"""Active inspect pipelines as detached Ray actors, one per run.

The actor owns the frame loop (``visionserve.surfaces.inspect.live.runner``), scores frames through
the multiplexed ``anomaly`` deployment, feeds the sink, and holds the WebRTC peer
connections that stream its annotated frames. Detached and named after the run, so
any ingress replica finds it and it outlives the replica that started it.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import numpy as np
import ray

from visionserve.errors import Conflict, ServiceUnavailable, VisionServeError, remote_cause

log = logging.getLogger(__name__)

NAMESPACE = "visionserve-inspect"
# How long the API waits for an actor before it counts it as gone.
CALL_TIMEOUT_S = 10.0


def actor_name(active_id: str) -> str:
    return f"pipeline-{active_id}"


class PipelineActor:
    """One active pipeline. Async actor: the loop and WebRTC share its event loop."""

    def __init__(self, spec: dict[str, Any], snapshot: dict[str, Any], anomaly: Any) -> None:
        from visionserve.settings import Settings

        logging.getLogger("visionserve").setLevel(logging.INFO)
        self.spec = spec
        self.settings = Settings.model_validate(snapshot)
        from deployments.anomaly import frames_handle

        self.anomaly = frames_handle(anomaly, spec["model_id"])
        self.runner: Any = None
        self.task: asyncio.Task[None] | None = None
        self.hub: Any = None

    async def start(self) -> None:
        from visionserve.surfaces.inspect.confinement import IoPolicy
        from visionserve.surfaces.inspect.live.runner import PipelineRunner
        from visionserve.surfaces.inspect.live.sinks import make_sink
        from visionserve.surfaces.inspect.live.sources import open_source
        from visionserve.surfaces.inspect.live.webrtc import PeerHub

        spec, settings = self.spec, self.settings
        source, timeout = spec["source"], settings.inspect.source_timeout_s
        # Checked here again, where the file is opened and the hosts connected: folders,
        # symlinks and DNS answers may have changed since the API accepted the config.
        policy = IoPolicy.from_settings(settings)
        sinks = []
        if spec["sink"]:  # connects (MQTT) or migrates (webhook outbox): off the loop
            sink = await asyncio.to_thread(
                make_sink,
                spec["sink"]["type"],
                spec["sink"]["config"],
                database_url=settings.database_url,
                webhook_secret=spec["sink"]["config"].get("secret"),
                policy=policy,
            )
            sinks.append(sink)
        self.runner = PipelineRunner(
            pipeline_id=spec["pipeline_id"],
            active_id=spec["active_id"],
            source_factory=lambda: open_source(
                source["type"],
                source["config"],
                open_timeout_s=timeout,
                read_timeout_s=timeout,
                policy=policy,
            ),
            predict=self._predict,
            sinks=sinks,
            threshold=spec["threshold"],
            fps=spec["fps"],
            emit=spec["emit"],
        )
        self.hub = PeerHub()
        self.task = asyncio.create_task(self.runner.run())

    async def _predict(self, rgb: np.ndarray) -> dict[str, Any]:
        from visionserve.models.anomaly.inference import Prediction, overlay

        out = await self.anomaly.frame.remote(rgb)
        anomalous = out["score"] >= self.spec["threshold"]
        pred = Prediction(
            score=out["score"],
            is_anomalous=anomalous,
            anomaly_map=out["anomaly_map"].astype(np.float32),
        )
        annotated = await asyncio.to_thread(overlay, rgb, pred)
        return {"score": out["score"], "is_anomalous": anomalous, "annotated": annotated}

    async def status(self) -> dict[str, Any]:
        runner = self.runner
        return {"status": runner.status(), "error": runner.error, "metrics": runner.metrics()}

    async def capture(self) -> dict[str, Any] | None:
        import cv2

        latest = self.runner.latest()
        if latest is None:
            return None
        rgb, score, timestamp = latest
        ok, png = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        if not ok:
            return None
        return {"png": png.tobytes(), "score": score, "timestamp": timestamp}

    async def offer(self, sdp: str) -> str:
        from visionserve.surfaces.inspect.live.webrtc import FrameTrack

        return await self.hub.answer(sdp, lambda: FrameTrack(self.runner))

    async def candidate(
        self, candidate: str, sdp_mid: str | None, sdp_mline_index: int | None
    ) -> None:
        await self.hub.add_candidate(candidate, sdp_mid, sdp_mline_index)

    async def stop(self) -> dict[str, Any]:
        await self.hub.close_all()
        await self.runner.stop()
        if self.task is not None:
            try:
                await asyncio.wait_for(self.task, 10)
            except Exception:
                log.warning("pipeline loop did not end cleanly", exc_info=True)
        return await self.status()


class RayPipelineHost:
    """:class:`~visionserve.surfaces.inspect.pipeline_service.PipelineHost` on Ray actors."""

    def __init__(self, snapshot: dict[str, Any], anomaly: Any) -> None:
        self.snapshot = snapshot
        self.anomaly = anomaly

    def _get(self, active_id: str) -> Any | None:
        if not ray.is_initialized():  # never start a Ray just to look an actor up
            return None
        try:
            return ray.get_actor(actor_name(active_id), namespace=NAMESPACE)
        except ValueError:
            return None

    async def _call(self, active_id: str, method: str, *args: Any) -> Any:
        actor = self._get(active_id)
        if actor is None:
            return None
        try:
            return await asyncio.wait_for(getattr(actor, method).remote(*args), CALL_TIMEOUT_S)
        except (ray.exceptions.RayActorError, TimeoutError):
            log.warning("pipeline actor %s did not answer %s", active_id, method, exc_info=True)
            return None

    async def start(self, active_id: str, spec: dict[str, Any]) -> None:
        if self.anomaly is None or not ray.is_initialized():
            raise ServiceUnavailable("Live pipelines need the cluster's anomaly deployment")
        actor: Any = (
            ray.remote(PipelineActor)
            .options(
                name=actor_name(active_id),
                namespace=NAMESPACE,
                lifetime="detached",
                num_cpus=0,  # I/O and glue; the scoring runs in the anomaly deployment
                max_restarts=0,
                max_concurrency=64,
            )
            .remote(spec, self.snapshot, self.anomaly)
        )
        try:
            await actor.start.remote()
        except Exception as exc:
            ray.kill(actor, no_restart=True)
            cause = remote_cause(exc)
            if isinstance(cause, VisionServeError):
                raise cause from None  # e.g. an MQTT broker that refuses us: its own status
            raise

    async def status(self, active_id: str) -> dict[str, Any] | None:
        return await self._call(active_id, "status")

    async def stop(self, active_id: str) -> dict[str, Any] | None:
        final = await self._call(active_id, "stop")
        actor = self._get(active_id)
        if actor is not None:
            ray.kill(actor, no_restart=True)
        return final

    async def capture(self, active_id: str) -> dict[str, Any] | None:
        return await self._call(active_id, "capture")

    async def offer(self, active_id: str, sdp: str) -> str:
        actor = self._get(active_id)
        if actor is None:
            raise Conflict(f"Active pipeline {active_id} is not running")
        return await actor.offer.remote(sdp)

    async def candidate(
        self, active_id: str, candidate: str, sdp_mid: str | None, sdp_mline_index: int | None
    ) -> None:
        actor = self._get(active_id)
        if actor is None:
            raise Conflict(f"Active pipeline {active_id} is not running")
        await actor.candidate.remote(candidate, sdp_mid, sdp_mline_index)

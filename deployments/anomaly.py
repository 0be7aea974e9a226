"""Anomaly inference: one deployment serves every trained model, multiplexed by model id.

Serve routes a request carrying ``multiplexed_model_id`` to a replica that already
holds that model when it can; each replica keeps the most recently used models
compiled (OpenVINO) and loads others from the blob store on demand.
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from ray import serve
from ray.serve.handle import DeploymentHandle

from deployments.common import HEALTH, autoscaling, model_cpus
from deployments.metrics import measured
from visionserve.errors import Conflict, NotFound
from visionserve.platform.logging import configure_logging
from visionserve.settings import settings_from
from visionserve.store.blobs import make_blob_store
from visionserve.store.db import session_scope
from visionserve.surfaces.inspect.records import InspectModel

log = logging.getLogger(__name__)

#: Compiled models kept per replica (least recently used is dropped first).
MODELS_PER_REPLICA = 8


def frames_handle(anomaly: DeploymentHandle, model_id: str) -> DeploymentHandle:
    """The handle a live pipeline scores its frames through: one model, over Serve's gRPC
    transport rather than Ray actor calls, which on 2 cores halves what Serve itself
    spends on a small frame's call (``bench/inspect.py``: 1,250 instead of 670 no-model
    calls a second, 8 in flight). One-off predictions keep the default: their images
    can be large, and Ray's object store passes those without copying them into a message.
    """
    return anomaly.options(multiplexed_model_id=model_id, _by_reference=False)


@serve.deployment(
    name="anomaly",
    ray_actor_options={"num_cpus": model_cpus()},
    autoscaling_config=autoscaling(4),
    max_ongoing_requests=16,
    max_queued_requests=64,
    **HEALTH,
)
class AnomalyDetection:
    def __init__(self, snapshot: dict[str, Any]) -> None:
        configure_logging()
        self.settings = settings_from(snapshot)
        self.blobs = make_blob_store(self.settings)

    @serve.multiplexed(max_num_models_per_replica=MODELS_PER_REPLICA)
    async def get_model(self, model_id: str) -> Any:
        return await asyncio.to_thread(self._load, model_id)

    def _load(self, model_id: str) -> Any:
        from visionserve.models.anomaly.inference import AnomalyModel

        with session_scope(self.settings.database_url) as s:
            model = s.get(InspectModel, model_id)
            if model is None:
                raise NotFound(f"Model {model_id} not found")
            if model.status != "ready":
                raise Conflict(f"Model {model_id} is {model.status}")
            prefix = f"{model.blob_prefix}openvino/"
        # The compiled model does not need its files afterwards: load from a temp dir.
        with tempfile.TemporaryDirectory(prefix="visionserve-anomaly-") as tmp:
            for key in self.blobs.list(prefix):
                target = Path(tmp) / key[len(prefix) :]
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(self.blobs.get(key))
            loaded = AnomalyModel.load(Path(tmp), device=self.settings.inspect.device)
        log.info("loaded anomaly model %s", model_id)
        return loaded

    @measured
    async def predict(self, rgb: np.ndarray) -> dict[str, Any]:
        """Score an RGB image: score, label and a heat map PNG at the image's size."""
        from visionserve.models.anomaly.inference import heatmap_png

        model = await self.get_model(serve.get_multiplexed_model_id())
        pred = await asyncio.to_thread(model.predict, rgb)
        png = await asyncio.to_thread(heatmap_png, pred, rgb)
        return {"score": pred.score, "is_anomalous": pred.is_anomalous, "heatmap_png": png}

    @measured
    async def frame(self, rgb: np.ndarray) -> dict[str, Any]:
        """Score a video frame; the anomaly map comes back as float16 at the frame's size."""
        model = await self.get_model(serve.get_multiplexed_model_id())
        pred = await asyncio.to_thread(model.predict, rgb)
        return {
            "score": pred.score,
            "is_anomalous": pred.is_anomalous,
            "anomaly_map": pred.anomaly_map.astype(np.float16),
        }

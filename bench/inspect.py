"""inspect benchmarks, side by side in one run (``python -m bench.inspect``).

1. Image and pixel AUROC of PatchCore with the built-in pretrained lite0 backbone vs
   the same model with random backbone weights (``pre_trained=false``) on generated
   fabric textures with scratches, stains and squares (goal: pretrained pixel AUROC
   >= 0.97).
2. Inference images/s on one core budget, batch 1, through our ``AnomalyModel``
   (OpenVINO, f32) vs anomalib's own ``TorchInferencer`` on the same trained model
   (and onnxruntime on its ONNX export for reference); then through the multiplexed
   ``anomaly`` Serve deployment on a local Ray, one request at a time and 8 in flight.
3. Training seconds per 100 training images (fit, then fit + test + three exports).
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from ray import serve

import visionserve.models.anomaly  # noqa: F401 (arms the torchvision shim first)
from bench._util import record, start_ray
from deployments.anomaly import AnomalyDetection, frames_handle
from tests.textures import make_dataset

NORMAL, ANOMALOUS, SIZE = 40, 18, 128  # 32 train, 8 + 18 held out
INFER_ROUNDS, INFER_PER_ROUND = 7, 30
SERVE_ROUNDS = 3
GOAL_PIXEL_AUROC = 0.97


def timed_train(arch: str, params: dict, samples, home: Path, work: Path, formats=()):  # type: ignore[no-untyped-def]
    """Train; return the result, seconds per stage (fit, test, export) and train count."""
    from visionserve.models.anomaly.training import Sample, split, train

    train_images, val = split([Sample(*s) for s in samples])
    started = time.perf_counter()
    first: dict[str, float] = {}

    def progress(fraction: float, info: dict) -> None:  # type: ignore[type-arg]
        first.setdefault(info["stage"], time.perf_counter() - started)

    result = train(arch, params, train_images, val, work, home, progress, formats=formats)
    total = time.perf_counter() - started
    test_at = first.get("test", first.get("export", total))
    export_at = first.get("export", total)
    stages = {"fit": test_at, "test": export_at - test_at, "export": total - export_at}
    return result, stages, len(train_images)


def images_per_s(runners: dict[str, Callable], frames: list[np.ndarray]) -> dict[str, float]:  # type: ignore[type-arg]
    """Median images/s of each runner over interleaved rounds (fair on a shared machine)."""
    for fn in runners.values():
        for frame in frames[:10]:
            fn(frame)
    rates: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(INFER_ROUNDS):
        for name, fn in runners.items():
            started = time.perf_counter()
            for i in range(INFER_PER_ROUND):
                fn(frames[i % len(frames)])
            rates[name].append(INFER_PER_ROUND / (time.perf_counter() - started))
    return {name: statistics.median(r) for name, r in rates.items()}


def handle_rates(handle: Any, frames: list[np.ndarray], n: int) -> dict[str, float]:
    """images/s of ``handle.frame`` calls, one at a time and 8 in flight: the median of
    SERVE_ROUNDS rounds of ``n`` calls each."""
    import asyncio

    handle.frame.remote(frames[0]).result()  # warm: loads and compiles the model

    def one_at_a_time() -> float:
        started = time.perf_counter()
        for i in range(n):
            handle.frame.remote(frames[i % len(frames)]).result()
        return n / (time.perf_counter() - started)

    async def in_flight(width: int) -> float:
        sem = asyncio.Semaphore(width)

        async def one(i: int) -> None:
            async with sem:
                await handle.frame.remote(frames[i % len(frames)])

        started = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(n)))
        return n / (time.perf_counter() - started)

    rounds = [(one_at_a_time(), asyncio.run(in_flight(8))) for _ in range(SERVE_ROUNDS)]
    return {
        "sequential": statistics.median(r[0] for r in rounds),
        "concurrent": statistics.median(r[1] for r in rounds),
    }


def through_serve(openvino_dir: Path, frames: list[np.ndarray], n: int = 300) -> dict[str, Any]:
    """images/s through the ``anomaly`` deployment's handle as live pipelines call it, and
    through a deployment of the same shape whose ``frame`` runs no model: what Serve
    alone costs per frame on this machine."""
    from visionserve.settings import Settings
    from visionserve.store.blobs import make_blob_store
    from visionserve.store.db import session_scope
    from visionserve.surfaces.inspect.records import InspectModel, InspectProject

    with tempfile.TemporaryDirectory(prefix="bench-serve-") as tmp:
        settings = Settings(home=Path(tmp))
        blobs = make_blob_store(settings)
        for f in openvino_dir.iterdir():
            blobs.put(f"bench/model/openvino/{f.name}", f.read_bytes())
        with session_scope(settings.database_url) as s:
            s.add(InspectProject(id="bench", name="bench"))
            s.flush()
            s.add(
                InspectModel(
                    id="m1",
                    project_id="bench",
                    name="bench",
                    architecture="patchcore",
                    status="ready",
                    blob_prefix="bench/model/",
                )
            )
        import ray

        start_ray()
        try:
            app = AnomalyDetection.bind(settings.model_dump(mode="json"))
            handle = serve.run(app, name="bench-inspect", route_prefix=None)
            model = handle_rates(frames_handle(handle, "m1"), frames, n)
            serve.delete("bench-inspect")
            noop = serve.run(NoModel.bind(), name="bench-noop", route_prefix=None)
            # The same handle options, so the same transport (gRPC).
            return {"model": model, "no model": handle_rates(frames_handle(noop, "m1"), frames, n)}
        finally:
            serve.shutdown()
            ray.shutdown()


class _NoModel:
    """The anomaly deployment's ``frame`` call and answer, with no model in between."""

    async def frame(self, rgb: np.ndarray) -> dict[str, Any]:
        amap = np.zeros(rgb.shape[:2], np.float16)
        return {"score": 0.0, "is_anomalous": False, "anomaly_map": amap}


# The anomaly deployment's request and CPU options.
NoModel = serve.deployment(
    _NoModel,
    name="no-model",
    max_ongoing_requests=AnomalyDetection.max_ongoing_requests,
    ray_actor_options=AnomalyDetection.ray_actor_options,
)


def main() -> None:
    from visionserve import torch_compat as compat

    threads = compat.threads()
    with tempfile.TemporaryDirectory(prefix="bench-inspect-") as tmp:
        root = Path(tmp)
        home = root / "models"
        samples = make_dataset(root / "data", NORMAL, ANOMALOUS, size=SIZE, seed=1)
        import anomalib.models  # noqa: F401 (import time out of the measurements)

        base = {"image_size": SIZE}
        pre, pre_t, n_train = timed_train(
            "patchcore", base, samples, home, root / "pre", ("openvino", "onnx", "pytorch")
        )
        rnd, rnd_t, _ = timed_train(
            "patchcore", {**base, "pre_trained": False}, samples, home, root / "rnd"
        )
        # The default input size (the textures upscaled): 4× the patches of 128 px.
        _, big_t, _ = timed_train("patchcore", {"image_size": 256}, samples, home, root / "big")
        _, padim_t, _ = timed_train("padim", base, samples, home, root / "padim")

        frames = [cv2.cvtColor(cv2.imread(str(s.path)), cv2.COLOR_BGR2RGB) for s in samples[-12:]]
        from visionserve.models.anomaly.inference import AnomalyModel

        ov_model = AnomalyModel.load(pre.exports["openvino"], threads=threads)
        os.environ["TRUST_REMOTE_CODE"] = "1"  # anomalib's .pt export is a pickled module
        import torch
        from anomalib.deploy import TorchInferencer

        torch_model = TorchInferencer(pre.exports["pytorch"] / "model.pt", device="cpu")
        from visionserve.models.runtime import make_session

        session = make_session(pre.exports["onnx"] / "model.onnx", threads=threads)

        def ort_predict(frame: np.ndarray) -> object:
            x = (frame.astype(np.float32) / 255).transpose(2, 0, 1)[None]
            return session.run(None, {"input": x})

        with torch.inference_mode():
            ips = images_per_s(
                {"openvino": ov_model.predict, "torch": torch_model.predict, "ort": ort_predict},
                frames,
            )
        rates = through_serve(pre.exports["openvino"], frames)
    served, noop = rates["model"], rates["no model"]
    # Serve's work and the model's share the same 2 cores: the most this machine can
    # give through Serve is both costs per image added (1/rate is CPU-seconds per image).
    ceiling = 1 / (1 / noop["concurrent"] + 1 / ips["openvino"])

    pm, rm = pre.metrics, rnd.metrics
    print(
        f"PatchCore, {SIZE}px fabric textures: {n_train} train images, "
        f"{pm['val_images']} held out ({pm['val_anomalous']} with defects)"
    )
    print(f"  {'':<28}{'image AUROC':>12}{'pixel AUROC':>12}")
    print(f"  {'pretrained lite0':<28}{pm['image_auroc']:12.3f}{pm['pixel_auroc']:12.3f}")
    print(f"  {'random weights (baseline)':<28}{rm['image_auroc']:12.3f}{rm['pixel_auroc']:12.3f}")
    verdict = "PASS" if float(pm["pixel_auroc"]) >= GOAL_PIXEL_AUROC else "FAIL"
    print(
        f"  pretrained pixel AUROC {pm['pixel_auroc']:.3f} (goal >= {GOAL_PIXEL_AUROC}): {verdict}"
    )
    print(
        f"inference, batch 1, {SIZE}x{SIZE}, {threads} threads, median of {INFER_ROUNDS} "
        "interleaved rounds (images/s)"
    )
    print(f"  AnomalyModel (OpenVINO f32)  {ips['openvino']:8.1f}")
    print(f"  anomalib TorchInferencer     {ips['torch']:8.1f}")
    print(f"  onnxruntime (reference)      {ips['ort']:8.1f}")
    print(f"  OpenVINO / TorchInferencer = {ips['openvino'] / ips['torch']:.2f}")
    print("  through the anomaly Serve deployment (handle calls, one replica):")
    print(f"    one request at a time      {served['sequential']:8.1f}")
    print(f"    8 in flight                {served['concurrent']:8.1f}")
    print(f"    8 in flight / TorchInferencer = {served['concurrent'] / ips['torch']:.2f}")
    print("  through a deployment of the same shape running no model (Serve alone):")
    print(f"    one request at a time      {noop['sequential']:8.1f}")
    print(f"    8 in flight                {noop['concurrent']:8.1f}")
    print(f"  ceiling here, Serve alone + bare OpenVINO per image: {ceiling:.1f}")
    print(f"    = {ceiling / ips['openvino']:.2f} of bare OpenVINO; ours reach")
    print(f"    {served['concurrent'] / ceiling:.2f} of the ceiling")
    record(
        "PatchCore pixel AUROC, pretrained vs random",
        float(pm["pixel_auroc"]),
        "AUROC",
        baseline=float(rm["pixel_auroc"]),
        goal=f">= {GOAL_PIXEL_AUROC}",
        goal_on="value",
    )
    record(
        "AnomalyModel (OpenVINO) vs TorchInferencer",
        ips["openvino"],
        "images/s",
        baseline=ips["torch"],
    )
    record(
        "anomaly deployment 8 in flight vs TorchInferencer",
        served["concurrent"],
        "images/s",
        baseline=ips["torch"],
        goal=">= 2.5",
    )
    record(
        "anomaly deployment 8 in flight vs bare OpenVINO",
        served["concurrent"],
        "images/s",
        baseline=ips["openvino"],
        goal=">= 0.8",
    )
    record("Serve alone (no model), 8 handle calls in flight", noop["concurrent"], "images/s")
    record(
        "ceiling here (Serve alone + bare OpenVINO) vs bare OpenVINO",
        ceiling,
        "images/s",
        baseline=ips["openvino"],
    )
    record(
        "anomaly deployment 8 in flight vs that ceiling",
        served["concurrent"],
        "images/s",
        baseline=ceiling,
        goal=">= 0.8",
    )
    record(
        "anomaly deployment 8 in flight vs one at a time",
        served["concurrent"],
        "images/s",
        baseline=served["sequential"],
    )
    per100 = 100 / n_train
    record("PatchCore 128px fit per 100 images", pre_t["fit"] * per100, "s")
    print("training seconds per 100 training images (fit: features + memory bank)")
    print(f"  PatchCore 128px, pretrained lite0   {pre_t['fit'] * per100:7.1f}")
    print(f"  PatchCore 128px, random weights     {rnd_t['fit'] * per100:7.1f}")
    print(f"  PatchCore 256px, pretrained lite0   {big_t['fit'] * per100:7.1f}")
    print(f"  PaDiM     128px, pretrained lite0   {padim_t['fit'] * per100:7.1f}")
    print(
        f"  fixed per model: test {pre_t['test']:.1f} s on {pm['val_images']} images, "
        f"export to OpenVINO + ONNX + PyTorch {pre_t['export']:.1f} s"
    )


if __name__ == "__main__":
    main()

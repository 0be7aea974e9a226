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

import cv2
import numpy as np

import visionserve.models.anomaly  # noqa: F401 (arms the torchvision shim first)
from bench._util import record
from tests.textures import make_dataset

NORMAL, ANOMALOUS, SIZE = 40, 18, 128  # 32 train, 8 + 18 held out
INFER_ROUNDS, INFER_PER_ROUND = 7, 30
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


def through_serve(openvino_dir: Path, frames: list[np.ndarray], n: int = 120) -> dict[str, float]:
    """images/s through the ``anomaly`` deployment's handle (what pipelines call)."""
    import asyncio

    import ray
    from ray import serve

    from deployments.anomaly import AnomalyDetection
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
        repo = str(Path(__file__).resolve().parents[1])
        ray.init(
            num_cpus=2, include_dashboard=False, runtime_env={"env_vars": {"PYTHONPATH": repo}}
        )
        try:
            app = AnomalyDetection.bind(settings.model_dump(mode="json"))
            handle = serve.run(app, name="bench-inspect", route_prefix=None)
            model = handle.options(multiplexed_model_id="m1")
            model.frame.remote(frames[0]).result()  # loads and compiles the model

            started = time.perf_counter()
            for i in range(n):
                model.frame.remote(frames[i % len(frames)]).result()
            sequential = n / (time.perf_counter() - started)

            async def in_flight(width: int) -> float:
                sem = asyncio.Semaphore(width)

                async def one(i: int) -> None:
                    async with sem:
                        await model.frame.remote(frames[i % len(frames)])

                started = time.perf_counter()
                await asyncio.gather(*(one(i) for i in range(n)))
                return n / (time.perf_counter() - started)

            concurrent = asyncio.run(in_flight(8))
        finally:
            serve.shutdown()
            ray.shutdown()
    return {"sequential": sequential, "concurrent": concurrent}


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
        served = through_serve(pre.exports["openvino"], frames)

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

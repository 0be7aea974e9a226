"""documents benchmarks, side by side in one run (``python -m bench.documents``).

1. Pages/s for a 50-page digital PDF through our Serve graph (task API → job worker →
   render ‖ OCR(Auto: the text layer) ‖ layout → segments → chunks) vs pymupdf4llm's
   Markdown conversion of the same file.
2. Seconds per scanned page through the graph (Tesseract OCR + layout) vs the
   ``tesseract`` command alone on the same page images.
"""

from __future__ import annotations

import base64
import io
import os
import subprocess
import tempfile
import time
from pathlib import Path

import httpx
from PIL import Image

from bench._util import record, start_ray, start_serve
from tests.documents_fixtures import report_pdf, scanned_png

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
DIGITAL_PAGES = 50
SCANNED_PAGES = 6


def parse(client: httpx.Client, data: bytes, config: dict) -> float:  # type: ignore[type-arg]
    started = time.perf_counter()
    r = client.post("/api/v1/task/parse", json={"file": base64.b64encode(data).decode(), **config})
    r.raise_for_status()
    task_id = r.json()["task_id"]
    while True:
        task = client.get(f"/api/v1/task/{task_id}", params={"include_chunks": False}).json()
        if task["status"] in ("Succeeded", "Failed"):
            assert task["status"] == "Succeeded", task["message"]
            return time.perf_counter() - started
        time.sleep(0.1)


def tiff_of(pngs: list[bytes]) -> bytes:
    frames = [Image.open(io.BytesIO(p)) for p in pngs]
    buf = io.BytesIO()
    frames[0].save(buf, "TIFF", save_all=True, append_images=frames[1:], compression="tiff_lzw")
    return buf.getvalue()


def main() -> None:
    import pymupdf
    import pymupdf4llm
    import ray
    from ray import serve

    from graphs.app import build_app
    from visionserve.settings import get_settings
    from visionserve.store.keys import KeyStore

    digital = report_pdf(DIGITAL_PAGES)
    pages = [scanned_png(report_pdf(1), seed=i) for i in range(SCANNED_PAGES)]
    scanned = tiff_of(pages)

    started = time.perf_counter()
    pymupdf4llm.to_markdown(pymupdf.open(stream=digital, filetype="pdf"))
    baseline_digital = time.perf_counter() - started

    with tempfile.TemporaryDirectory() as tmp:
        files = []
        for i, png in enumerate(pages):
            path = Path(tmp) / f"p{i}.png"
            path.write_bytes(png)
            files.append(path)
        env = {**os.environ, "OMP_THREAD_LIMIT": "1"}
        started = time.perf_counter()
        for path in files:
            subprocess.run(
                ["tesseract", str(path), "stdout"], env=env, check=True, capture_output=True
            )
        baseline_scanned = (time.perf_counter() - started) / len(files)

    home = Path(tempfile.mkdtemp(prefix="vs-bench-docs-"))
    start_ray()
    server = start_serve()
    serve.run(
        build_app(
            {
                "settings": {"home": str(home), "model_home": str(get_settings().model_home)},
                "surfaces": ["documents"],
            }
        ),
        name="visionserve",
        route_prefix="/",
    )
    key, _ = KeyStore(f"sqlite:///{home / 'visionserve.db'}").create("bench")
    try:
        with httpx.Client(
            base_url=f"{server}/documents",
            timeout=600,
            headers={"Authorization": f"Bearer {key}"},
        ) as client:
            parse(client, report_pdf(2), {"ocr_strategy": "Auto"})  # warm every stage
            ours_digital = parse(client, digital, {"ocr_strategy": "Auto"})
            ours_scanned = parse(client, scanned, {"ocr_strategy": "All"}) / SCANNED_PAGES
    finally:
        serve.shutdown()
        ray.shutdown()

    ours_pps, base_pps = DIGITAL_PAGES / ours_digital, DIGITAL_PAGES / baseline_digital
    record("digital PDF vs pymupdf4llm", ours_pps, "pages/s", baseline=base_pps, goal=">= 1.0")
    record(
        "scanned page vs tesseract CLI",
        ours_scanned,
        "s/page",
        baseline=baseline_scanned,
        goal="<= 1.3",
    )
    print(f"digital PDF, {DIGITAL_PAGES} pages (pages/s)")
    print(f"  VisionServe graph (layout + segments + chunks) {ours_pps:8.2f}")
    print(f"  pymupdf4llm.to_markdown                        {base_pps:8.2f}")
    print(f"  ratio ours / pymupdf4llm                       {ours_pps / base_pps:8.2f}")
    print(f"scanned pages, {SCANNED_PAGES} at 200 DPI (s/page)")
    print(f"  VisionServe graph (Tesseract + layout + chunks) {ours_scanned:7.2f}")
    print(f"  tesseract command alone                         {baseline_scanned:7.2f}")
    print(
        f"  ratio ours / tesseract                          {ours_scanned / baseline_scanned:7.2f}"
    )


if __name__ == "__main__":
    main()

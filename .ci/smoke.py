"""The CI smoke checks against a running `make run` (started by .ci/smoke.sh).

Waits (bounded) until ``/health`` says ``ok`` with every deployment HEALTHY, then sends
one real request per surface. Prints each check with its time; the last line is
``checks: N passed, M failed``; the exit status is 0 only when every check passed.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[1]
# Words the smoke PDF carries; the documents check wants them back from OCR.
PDF_WORDS = ["VisionServe", "smoke", "invoice", "4711"]


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def alive(pid: int | None) -> bool:
    if pid is None:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def wait_healthy(base: str, timeout_s: float, pid: int | None) -> dict[str, Any]:
    """Poll /health until ok with every deployment HEALTHY; fail at the deadline or on exit."""
    deadline = time.monotonic() + timeout_s
    last = "no answer yet"
    shown = ""
    while time.monotonic() < deadline:
        if not alive(pid):
            raise RuntimeError(f"`make run` exited before the server was healthy (last: {last})")
        try:
            r = httpx.get(f"{base}/health", timeout=10)
            body = r.json()
            deployments = body.get("deployments") or {}
            if (
                r.status_code == 200
                and body.get("status") == "ok"
                and deployments
                and all(state == "HEALTHY" for state in deployments.values())
            ):
                return body
            waiting = sorted(n for n, s in deployments.items() if s != "HEALTHY")
            last = f"{r.status_code} status={body.get('status')} not healthy: {waiting}"
        except (httpx.HTTPError, ValueError) as exc:
            last = f"{type(exc).__name__}: {exc}"
        if last != shown:  # say what changed, not the same line every few seconds
            say(f"  ... {last}")
            shown = last
        time.sleep(5)
    raise RuntimeError(f"/health not ok after {timeout_s:.0f} s (last: {last})")


def visionserve_cli(*args: str) -> subprocess.CompletedProcess[str]:
    """The admin CLI, from the repo root: the server's database (VISIONSERVE_HOME, ./var)."""
    cli = REPO / ".venv" / "bin" / "visionserve"
    return subprocess.run(
        [str(cli), *args], cwd=REPO, capture_output=True, text=True, timeout=120, check=False
    )


def create_key() -> tuple[str, str]:
    """A documents API key (id, secret) in the database the server uses."""
    proc = visionserve_cli("keys", "create", "--name", "smoke")
    if proc.returncode != 0:
        raise RuntimeError(f"visionserve keys create failed: {proc.stderr.strip()[-800:]}")
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if not lines:
        raise RuntimeError(f"visionserve keys create printed no JSON: {proc.stdout[-500:]!r}")
    created = json.loads(lines[-1])
    return str(created["id"]), str(created["key"])


def red_disc_png() -> bytes:
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (240, 180), "white")
    ImageDraw.Draw(image).ellipse((60, 30, 180, 150), fill=(220, 20, 20))
    buf = io.BytesIO()
    image.save(buf, "PNG")
    return buf.getvalue()


def smoke_pdf() -> bytes:
    import pymupdf

    doc = pymupdf.open()
    page = doc.new_page(width=595, height=842)  # A4 in points
    page.insert_text((72, 120), "VisionServe smoke test", fontsize=28)
    page.insert_text((72, 180), "This invoice number is 4711.", fontsize=20)
    data = doc.tobytes()
    doc.close()
    return bytes(data)


def check_cutout(client: httpx.Client) -> str:
    from PIL import Image

    png = red_disc_png()
    r = client.post(
        "/cutout/remove-background",
        json={"image": base64.b64encode(png).decode(), "include_models": ["local_u2netp"]},
        timeout=180,
    )
    assert r.status_code == 200, f"HTTP {r.status_code}: {r.text[:500]}"
    body = r.json()
    results = body.get("results") or []
    assert results, f"no results: {body}"
    result = results[0]
    assert result.get("model_id") == "local_u2netp", result
    assert result.get("status") == "success", f"result not a success: {result}"
    b64 = result.get("image_base64") or ""
    assert b64, f"result has no image: {result}"
    cut = Image.open(io.BytesIO(base64.b64decode(b64)))
    assert cut.size == (240, 180), f"cut-out is {cut.size}, input was (240, 180)"
    alpha = cut.convert("RGBA").getchannel("A")
    centre, corner = alpha.getpixel((120, 90)), alpha.getpixel((2, 2))
    return (
        f"local_u2netp success, {cut.format} {cut.size[0]}x{cut.size[1]}, "
        f"alpha centre {centre} / corner {corner}, {result.get('processing_time_ms')} ms"
    )


def check_documents(client: httpx.Client, key: str, timeout_s: float) -> str:
    auth = {"Authorization": f"Bearer {key}"}
    pdf = smoke_pdf()
    r = client.post(
        "/documents/api/v1/task/parse",
        json={"file": base64.b64encode(pdf).decode(), "file_name": "smoke.pdf"},
        headers=auth,
        timeout=60,
    )
    assert r.status_code == 200, f"HTTP {r.status_code}: {r.text[:500]}"
    task_id = r.json()["task_id"]
    deadline = time.monotonic() + timeout_s
    task: dict[str, Any] = {}
    while time.monotonic() < deadline:
        r = client.get(f"/documents/api/v1/task/{task_id}", headers=auth, timeout=30)
        assert r.status_code == 200, f"HTTP {r.status_code}: {r.text[:500]}"
        task = r.json()
        if task["status"] in ("Succeeded", "Failed", "Cancelled"):
            break
        time.sleep(1)
    assert task.get("status") == "Succeeded", (
        f"task {task_id} is {task.get('status')!r} after polling: {task.get('message')!r}"
    )
    segments = [s for c in (task.get("output") or {}).get("chunks") or [] for s in c["segments"]]
    text = " ".join(s.get("text") or s.get("content") or "" for s in segments)
    missing = [w for w in PDF_WORDS if w.lower() not in text.lower()]
    assert not missing, f"chunks lack {missing}; they read {text[:300]!r}"
    return f"task {task_id[:8]} Succeeded, {len(segments)} segments: {_short(text)}"


def check_inspect(client: httpx.Client) -> str:
    name = f"smoke-{uuid.uuid4().hex[:8]}"
    r = client.post("/inspect/api/projects", json={"name": name}, timeout=30)
    assert r.status_code == 201, f"POST /projects: HTTP {r.status_code}: {r.text[:500]}"
    project = r.json()
    r = client.get(f"/inspect/api/projects/{project['id']}", timeout=30)
    assert r.status_code == 200, f"GET /projects/id: HTTP {r.status_code}: {r.text[:500]}"
    assert r.json()["name"] == name, r.json()
    r = client.delete(f"/inspect/api/projects/{project['id']}", timeout=30)  # leave var/ tidy
    assert r.status_code == 204, f"DELETE /projects/id: HTTP {r.status_code}: {r.text[:500]}"
    return f"project {name} created, read back and deleted"


def smoke_invoice() -> bytes:
    """A one-page digital invoice whose fields the extract check wants back."""
    import pymupdf

    doc = pymupdf.open()
    page = doc.new_page(width=595, height=842)
    page.insert_text((50, 60), "Smoke Supplies GmbH", fontsize=20)
    page.insert_text((50, 140), "INVOICE", fontsize=16)
    page.insert_text((50, 170), "Invoice Number: SMK-4711", fontsize=11)
    page.insert_text((50, 188), "Invoice Date: 2026-03-14", fontsize=11)
    page.insert_text((50, 260), "Widgets", fontsize=11)
    page.insert_text((400, 260), "100.00", fontsize=11)
    page.insert_text((50, 290), "Total Amount: 119.00", fontsize=12)
    data = doc.tobytes()
    doc.close()
    return bytes(data)


def check_extract(client: httpx.Client, key: str) -> str:
    auth = {"Authorization": f"Bearer {key}"}
    schema = {"invoice_number": "string", "invoice_date": "date", "total_amount": "number"}
    r = client.post(
        "/extract/api/patterns",
        json={"name": "smoke invoices", "schema": schema},
        headers=auth,
        timeout=30,
    )
    assert r.status_code == 201, f"POST /patterns: HTTP {r.status_code}: {r.text[:500]}"
    pattern_id = r.json()["data"]["pattern_id"]
    try:
        r = client.post(
            f"/extract/api/patterns/{pattern_id}/ingest",
            json={"image_base64": base64.b64encode(smoke_invoice()).decode()},
            headers=auth,
            timeout=60,
        )
        assert r.status_code in (200, 202), f"ingest: HTTP {r.status_code}: {r.text[:500]}"
        job_id = r.json()["data"]["job_id"]
        deadline = time.monotonic() + 120
        job: dict[str, Any] = r.json()["data"]
        while job["status"] not in ("completed", "failed") and time.monotonic() < deadline:
            time.sleep(1)
            job = client.get(f"/extract/api/jobs/{job_id}", headers=auth, timeout=30).json()["data"]
        assert job["status"] == "completed", f"job {job_id} is {job['status']}: {job.get('error')}"
        want = {"invoice_number": "SMK-4711", "invoice_date": "2026-03-14", "total_amount": 119.0}
        assert job["result"] == want, f"result {job['result']} != {want}"
    finally:  # leave var/ tidy
        client.delete(f"/extract/api/patterns/{pattern_id}", headers=auth, timeout=30)
    return f"job {job_id[:8]} completed, confidence {job['confidence']}: {job['result']}"


def check_edit(client: httpx.Client, timeout_s: float = 180) -> str:
    """One b64 edit with a callback to a receiver on loopback (smoke.sh allow-lists it)."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    import numpy as np
    from PIL import Image

    r = client.get("/edit/health", timeout=30)
    assert r.status_code == 200 and r.json() == {"ok": True}, f"HTTP {r.status_code}: {r.text}"
    got: list[dict[str, Any]] = []
    arrived = threading.Event()

    class Callback(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            got.append(json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0)))))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()
            arrived.set()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Callback)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        # Mid-tones, so "20% brighter" shows in full (white cannot get brighter).
        grey = Image.linear_gradient("L").resize((160, 120)).point(lambda v: 60 + v // 3)
        buf = io.BytesIO()
        grey.convert("RGB").save(buf, "PNG")
        source = buf.getvalue()
        r = client.post(
            "/edit/process-image-async-b64",
            json={
                "prompt": "make it 20% brighter",
                "filename": "disc.png",
                "image_base64": base64.b64encode(source).decode(),
            },
            headers={"callbackUrl": f"http://127.0.0.1:{server.server_address[1]}/callback"},
            timeout=30,
        )
        assert r.status_code == 202, f"HTTP {r.status_code}: {r.text}"
        job_id = r.json()["job_id"]
        if not arrived.wait(timeout_s):
            state = client.get(f"/edit/jobs/{job_id}", timeout=30).text
            raise AssertionError(f"no callback within {timeout_s:.0f} s: {_short(state, 300)}")
    finally:
        server.shutdown()
        server.server_close()
    payload = got[0]
    keys = {"status", "job_id", "filename", "result_image_base64", "result_mime_type"}
    assert set(payload) == keys, f"callback keys {sorted(payload)} != {sorted(keys)}"
    assert payload["status"] == "completed" and payload["job_id"] == job_id, payload.get("status")
    out = Image.open(io.BytesIO(base64.b64decode(payload["result_image_base64"])))
    before = Image.open(io.BytesIO(source)).convert("L")
    ratio = float(np.asarray(out.convert("L"), float).mean() / np.asarray(before, float).mean())
    assert out.size == before.size and 1.15 < ratio < 1.25, f"brightness x{ratio:.2f}"
    return f"job {job_id[:8]} called back: {payload['result_mime_type']}, brightness x{ratio:.2f}"


def _short(text: str, n: int = 80) -> str:
    text = re.sub(r"\s+", " ", text).strip()
    return repr(text if len(text) <= n else text[: n - 1] + "…")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-url", default="http://127.0.0.1:8000")
    parser.add_argument("--wait", type=float, default=900, help="seconds to wait for /health")
    parser.add_argument("--task-timeout", type=float, default=300, help="documents task limit")
    parser.add_argument("--server-pid", type=int, help="give up early if this process exits")
    args = parser.parse_args()

    started = time.monotonic()
    say(f"smoke: waiting for {args.base_url}/health (at most {args.wait:.0f} s)")
    try:
        health = wait_healthy(args.base_url, args.wait, args.server_pid)
    except RuntimeError as exc:
        say(f"FAIL health ({time.monotonic() - started:.1f} s): {exc}")
        say("checks: 0 passed, 1 failed (the server never became healthy)")
        return 1
    say(
        f"ok   health ({time.monotonic() - started:.1f} s): status ok, "
        f"{len(health['deployments'])} deployments HEALTHY"
    )

    key_id = key = ""
    try:
        key_id, key = create_key()
        say("ok   api key created with `visionserve keys create --name smoke`")
    except Exception as exc:
        say(f"FAIL api key: {exc}")

    def documents(client: httpx.Client) -> str:
        if not key:
            raise AssertionError("no API key (see above)")
        return check_documents(client, key, args.task_timeout)

    def extract(client: httpx.Client) -> str:
        if not key:
            raise AssertionError("no API key (see above)")
        return check_extract(client, key)

    checks: list[tuple[str, Callable[[httpx.Client], str]]] = [
        ("cutout", check_cutout),
        ("documents", documents),
        ("inspect", check_inspect),
        ("extract", extract),
        ("edit", check_edit),
    ]
    passed = failed = 0
    with httpx.Client(base_url=args.base_url) as client:
        for name, check in checks:
            t0 = time.monotonic()
            try:
                detail = check(client)
            except Exception as exc:  # any failure is reported and counted, never raised
                failed += 1
                message = str(exc) or type(exc).__name__
                say(f"FAIL {name} ({time.monotonic() - t0:.1f} s): {message}")
            else:
                passed += 1
                say(f"ok   {name} ({time.monotonic() - t0:.1f} s): {detail}")
    if key_id:  # the key was for this run only
        revoked = visionserve_cli("keys", "revoke", key_id)
        if revoked.returncode != 0:
            say(f"note: could not revoke the smoke key {key_id}: {revoked.stderr.strip()[-300:]}")
    say(f"smoke: checks done in {time.monotonic() - started:.1f} s (wait included)")
    say(f"checks: {passed} passed, {failed} failed")
    return 0 if passed and not failed and key else 1


if __name__ == "__main__":
    sys.exit(main())

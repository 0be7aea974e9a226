"""VisionServe on a two-node Ray cluster, deployed as the README's scale-out section says.

``ray start --head`` and a second ``ray start --address`` node (their own CPU counts and
custom resources, token auth on), PostgreSQL, Redis and the S3 server configured under
the Serve config's ``args.settings``, the app deployed with ``serve deploy`` and used
through its HTTP API only; the Ray state and job APIs show where things run. The last
test kills the worker node (SIGKILL of its raylet and workers) mid-task.

One module, one cluster, run on its own after the rest of the suite (``make test``:
``pytest -m multinode``): the machine has two cores. Timings go to
``var/reports/multinode.json`` and to the terminal.
"""

from __future__ import annotations

import base64
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pymupdf
import pytest
import yaml

from tests.cluster.local_cluster import BIN, LocalCluster, free_port
from tests.conftest import REDIS_URL
from tests.textures import make_dataset

pytestmark = [pytest.mark.ray, pytest.mark.services, pytest.mark.multinode]

REPO = Path(__file__).resolve().parents[2]
BUCKET, BATCH_BUCKET = "visionserve-mn", "mn-batch"
# Serve replicas spread over both nodes: two of each of these.
TWO_REPLICAS = ("ingress", "job-worker", "bg-u2netp", "documents-graph", "doc-pages", "ocr")
MODEL_DEPLOYMENTS = ("bg-u2netp", "doc-pages", "ocr")
DOCUMENTS_RATE_LIMIT = 40
TIMINGS: dict[str, Any] = {}
# graphs.documents' warning when it sends a page again.
PAGE_RETRY = re.compile(r"task (\S+) page (\d+): (.*?); trying again")


def cluster_settings(s3: Any, database_url: str, home: Path, public_url: str) -> dict[str, Any]:
    """``args.settings`` of the Serve config: the state backends a cluster shares."""
    from visionserve.settings import get_settings

    return {
        "home": str(home),
        "model_home": str(get_settings().model_home),  # the fetched weights
        "public_url": public_url,
        "database_url": database_url,
        "redis_url": REDIS_URL,
        "blobs": {
            "backend": "s3",
            "s3": {
                "endpoint_url": s3.endpoint_url,
                "bucket": BUCKET,
                "access_key_id": s3.access_key_id,
                "secret_access_key": s3.secret_access_key,
            },
        },
        "limits": {"rate_limits": {"documents": DOCUMENTS_RATE_LIMIT}},
        # Short leases: a job of a lost worker is taken over within seconds.
        "jobs": {"lease_s": 4.0, "heartbeat_s": 1.0, "poll_s": 0.2, "concurrency": 1},
        "inspect": {"train_num_cpus": 1},
    }


def serve_config(settings: dict[str, Any], port: int) -> dict[str, Any]:
    """The committed serve_config.yaml, changed as a scale-out user changes it."""
    config = yaml.safe_load((REPO / "serve_config.yaml").read_text())
    # Both nodes share one host here, so only the head may bind the HTTP port.
    config["proxy_location"] = "HeadOnly"
    config["http_options"]["port"] = port
    (app,) = config["applications"]
    app["args"]["surfaces"] = ["cutout", "documents", "inspect"]
    app["args"]["cutout"]["models"] = ["u2netp"]
    app["args"]["settings"] = settings
    kept = {"bg-u2netp"} | {
        d["name"] for d in app["deployments"] if not d["name"].startswith(("bg-", "remote-"))
    }
    deployments = []
    for d in app["deployments"]:
        if d["name"] not in kept or d["name"] in ("edit", "extraction", "extract-graph"):
            continue
        if d["name"] in TWO_REPLICAS:
            scaling = d["autoscaling_config"]
            scaling.update(
                min_replicas=2, initial_replicas=2, max_replicas=max(2, scaling["max_replicas"])
            )
        deployments.append(d)
    app["deployments"] = deployments
    return config


def keep_logs(work: Path) -> None:
    """Keep the nodes' Ray and Serve logs of a failed run, where CI can show them."""
    kept = REPO / "var" / "reports" / "multinode-logs"
    shutil.rmtree(kept, ignore_errors=True)
    for node_log in work.glob("*.log"):
        kept.mkdir(parents=True, exist_ok=True)
        shutil.copy(node_log, kept)
    for session in (work / "ray").glob("session_2*"):
        shutil.copytree(session / "logs", kept / session.name, dirs_exist_ok=True)
    print(f"\nthe failed run's cluster logs: {kept}", file=sys.stderr)


@pytest.fixture(scope="module")
def cluster(request, s3_server, postgres_url) -> Iterator[dict[str, Any]]:  # type: ignore[no-untyped-def]
    import boto3

    work = Path(f"/tmp/vs-mn-{secrets.token_hex(3)}")  # short: Ray's socket paths
    work.mkdir()
    s3 = boto3.client(
        "s3",
        endpoint_url=s3_server.endpoint_url,
        aws_access_key_id=s3_server.access_key_id,
        aws_secret_access_key=s3_server.secret_access_key,
        region_name="us-east-1",
    )
    for bucket in (BUCKET, BATCH_BUCKET):
        s3.create_bucket(Bucket=bucket)
    env = {k: v for k, v in os.environ.items() if not k.startswith("VISIONSERVE_")}
    env.update(
        RAY_AUTH_MODE="token",
        RAY_AUTH_TOKEN=secrets.token_hex(16),
        RAY_USAGE_STATS_ENABLED="0",
        # `make run` and the test session keep Ray single-node (loopback); this one is not.
        RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="1",
        PATH=f"{BIN}:{env['PATH']}",  # `python` of a `ray job submit` is the venv's
    )
    local = LocalCluster(work, env)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    settings = cluster_settings(s3_server, postgres_url, work / "home", base)
    started = time.monotonic()
    try:
        local.start_node("head", num_cpus=3, resources={"node_head": 1})
        local.start_node("worker", num_cpus=3, resources={"node_worker": 1})
        config = work / "serve_config.yaml"
        config.write_text(yaml.safe_dump(serve_config(settings, port), sort_keys=False))
        local.run("serve", "deploy", str(config), "--address", local.dashboard)
        wait_healthy(base, timeout_s=900)
        TIMINGS["cluster_up_s"] = round(time.monotonic() - started, 1)
        yield {"local": local, "base": base, "s3": s3, "settings": settings, "env": env}
    finally:
        report()
        local.stop()
        if request.session.testsfailed:
            keep_logs(work)
        shutil.rmtree(work, ignore_errors=True)


def pages_sent_again(work: Path) -> dict[str, int]:
    """The documents graph's page retries, by reason, from every log of the cluster.

    A record may reach both a replica's log and its worker's stderr: each counts once.
    """
    retries = set()
    for log in (work / "ray").glob("session_2*/logs/**/*"):
        if log.suffix in (".log", ".err"):
            retries.update(PAGE_RETRY.findall(log.read_text(errors="replace")))
    reasons: dict[str, int] = {}
    for _, _, why in retries:
        reason = "no answer" if "got no answer" in why else "replica gone"
        reasons[reason] = reasons.get(reason, 0) + 1
    return reasons


def report() -> None:
    out = REPO / "var" / "reports"
    out.mkdir(parents=True, exist_ok=True)
    (out / "multinode.json").write_text(json.dumps(TIMINGS, indent=2) + "\n")
    sys.stderr.write(f"\nmulti-node timings: {json.dumps(TIMINGS)}\n")


def health(base: str) -> dict[str, Any]:
    return httpx.get(f"{base}/health", timeout=10).json()  # type: ignore[no-any-return]


def wait_healthy(base: str, timeout_s: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = health(base)
            if last["status"] == "ok" and last["deployments"]:
                return last
        except (httpx.HTTPError, ValueError) as exc:
            last = repr(exc)
        time.sleep(2)
    raise AssertionError(f"not healthy after {timeout_s:.0f} s: {last}")


def api_key(cluster: dict[str, Any], name: str) -> str:
    """`visionserve keys create` against the cluster's database, as an operator runs it."""
    env = {**cluster["env"], "VISIONSERVE_DATABASE_URL": cluster["settings"]["database_url"]}
    out = subprocess.run(
        [str(BIN / "visionserve"), "keys", "create", "--name", name],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return str(json.loads(next(line for line in out.splitlines() if line.startswith("{")))["key"])


def keys_in(cluster: dict[str, Any], bucket: str, prefix: str) -> list[str]:
    listing = cluster["s3"].list_objects_v2(Bucket=bucket, Prefix=prefix)
    return [o["Key"] for o in listing.get("Contents", [])]


def marked_pdf(pages: int, tag: str) -> bytes:
    """A PDF whose every page carries a word of its own, to count pages in the chunks."""
    doc = pymupdf.open()
    for number in range(1, pages + 1):
        page = doc.new_page()
        page.insert_text((72, 96), f"Section {number}", fontsize=22)
        page.insert_text((72, 140), f"Marker {tag}p{number} closes this page.", fontsize=14)
    data = bytes(doc.tobytes())
    doc.close()
    return data


def parse(client: httpx.Client, pdf: bytes, name: str) -> str:
    r = client.post(
        "/api/v1/task/parse",
        json={"file": base64.b64encode(pdf).decode(), "file_name": name, "ocr_strategy": "All"},
    )
    assert r.status_code == 200, r.text
    return str(r.json()["task_id"])


def wait_task(client: httpx.Client, task_id: str, timeout_s: float = 600) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        r = client.get(f"/api/v1/task/{task_id}")
        if r.status_code == 429:  # polling counts against the key's rate limit: wait as told
            time.sleep(float(r.headers["Retry-After"]))
            continue
        assert r.status_code == 200, (r.status_code, r.text)
        task = r.json()
        if task["status"] in ("Succeeded", "Failed", "Cancelled"):
            return task  # type: ignore[no-any-return]
        time.sleep(1)
    raise AssertionError(f"task {task_id} not finished: {task['status']} {task['message']}")


def docs_client(cluster: dict[str, Any], key: str) -> httpx.Client:
    return httpx.Client(
        base_url=f"{cluster['base']}/documents",
        headers={"Authorization": f"Bearer {key}"},
        timeout=60,
    )


def node_names(cluster: dict[str, Any]) -> dict[str, str]:
    """node id -> head | worker, from the custom resource each node was started with."""
    names = {}
    for node in cluster["local"].alive_nodes():
        resources = node.get("resources_total", {})
        names[node["node_id"]] = "head" if "node_head" in resources else "worker"
    return names


def test_model_replicas_run_on_both_nodes(cluster) -> None:  # type: ignore[no-untyped-def]
    names = node_names(cluster)
    assert sorted(names.values()) == ["head", "worker"]
    for deployment in (*MODEL_DEPLOYMENTS, "ingress", "job-worker"):
        replicas = cluster["local"].actors(f"ServeReplica:visionserve:{deployment}")
        placed = sorted(names.get(r["node_id"], r["node_id"]) for r in replicas)
        assert placed == ["head", "worker"], (
            f"{deployment}: {placed}",
            [(r["class_name"], r["state"], r["node_id"]) for r in replicas],
            cluster["local"].run("serve", "status", "--address", cluster["local"].dashboard),
        )
    status = health(cluster["base"])
    assert status["status"] == "ok" and set(MODEL_DEPLOYMENTS) <= set(status["deployments"])


def test_cutout_and_documents_keep_their_blobs_in_s3(cluster) -> None:  # type: ignore[no-untyped-def]
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (160, 120), "white")
    ImageDraw.Draw(image).ellipse((40, 20, 120, 100), fill=(200, 30, 30))
    png = _png(image)
    r = httpx.post(
        f"{cluster['base']}/cutout/remove-background",
        json={"image": base64.b64encode(png).decode(), "include_models": ["local_u2netp"]},
        timeout=180,
    )
    assert r.status_code == 200, r.text
    (result,) = r.json()["results"]
    assert result["status"] == "success", result
    # The signed URL is the S3 server's presigned one: the image lives in the bucket.
    assert result["image_url"].startswith(f"{cluster['s3'].meta.endpoint_url}/{BUCKET}/")
    fetched = httpx.get(result["image_url"], timeout=30)
    assert fetched.status_code == 200 and fetched.content[:8] == b"\x89PNG\r\n\x1a\n"

    with docs_client(cluster, api_key(cluster, "mn-docs")) as client:
        task_id = parse(client, marked_pdf(3, "s3"), "three.pdf")
        task = wait_task(client, task_id)
    assert task["status"] == "Succeeded", task["message"]
    text = " ".join(s["text"] for c in task["output"]["chunks"] for s in c["segments"])
    assert all(f"s3p{n}" in text for n in (1, 2, 3)), text
    stored = keys_in(cluster, BUCKET, f"documents/tasks/{task_id}/")
    assert any("/output-" in k for k in stored) and len(stored) >= 2, stored


def test_rate_limit_is_shared_by_the_ingress_replicas(cluster) -> None:  # type: ignore[no-untyped-def]
    ingress = cluster["local"].actors("ServeReplica:visionserve:ingress")
    assert len(ingress) == 2
    with docs_client(cluster, api_key(cluster, "mn-rate")) as client:
        codes = [client.get("/api/v1/tasks").status_code for _ in range(DOCUMENTS_RATE_LIMIT + 15)]
    # Each replica alone would let through up to the limit: together they let through it once.
    assert codes.count(200) == DOCUMENTS_RATE_LIMIT, codes
    assert codes[:DOCUMENTS_RATE_LIMIT] == [200] * DOCUMENTS_RATE_LIMIT
    assert set(codes[DOCUMENTS_RATE_LIMIT:]) == {429}


def test_documents_batch_as_a_ray_job_writes_to_s3(cluster) -> None:  # type: ignore[no-untyped-def]
    s3 = cluster["s3"]
    for n in (1, 2):
        s3.put_object(Bucket=BATCH_BUCKET, Key=f"in/doc{n}.pdf", Body=marked_pdf(2, f"b{n}"))
    creds = cluster["settings"]["blobs"]["s3"]
    started = time.monotonic()
    out = cluster["local"].run(
        "ray", "job", "submit", "--address", cluster["local"].dashboard, "--",
        "python", "-m", "jobs.documents_batch",
        "--input", f"s3://{BATCH_BUCKET}/in/", "--output", f"s3://{BATCH_BUCKET}/out/",
        "--endpoint-url", creds["endpoint_url"], "--access-key-id", creds["access_key_id"],
        "--secret-access-key", creds["secret_access_key"],
    )  # fmt: skip
    TIMINGS["documents_batch_job_s"] = round(time.monotonic() - started, 1)
    assert "succeeded" in out.lower(), out[-2000:]
    written = sorted(keys_in(cluster, BATCH_BUCKET, "out/"))
    assert written == ["out/doc1.json", "out/doc2.json"], written
    doc = json.loads(s3.get_object(Bucket=BATCH_BUCKET, Key="out/doc2.json")["Body"].read())
    assert "b2p2" in json.dumps(doc)


def test_training_as_a_ray_job_registers_the_model(cluster, tmp_path) -> None:  # type: ignore[no-untyped-def]
    base = f"{cluster['base']}/inspect/api"
    dataset = make_dataset(tmp_path, normal=8, anomalous=2, size=64)
    project = httpx.post(f"{base}/projects", json={"name": "mn-train"}, timeout=30).json()
    for label in ("normal", "anomalous"):
        files = [
            ("files", (s.path.name, s.path.read_bytes(), "image/png"))
            for s in dataset
            if s.label == label
        ]
        r = httpx.post(
            f"{base}/projects/{project['id']}/media", files=files, data={"label": label}, timeout=60
        )
        assert r.status_code == 201, r.text
    # The job's settings: the same database, blob store and job timings as the Serve app
    # (its heartbeat is what stores the progress the API shows).
    settings = cluster["settings"]
    env_vars = {
        "VISIONSERVE_DATABASE_URL": settings["database_url"],
        "VISIONSERVE_MODEL_HOME": settings["model_home"],
        "VISIONSERVE_BLOBS__BACKEND": "s3",
        **{f"VISIONSERVE_BLOBS__S3__{k.upper()}": v for k, v in settings["blobs"]["s3"].items()},
        **{f"VISIONSERVE_JOBS__{k.upper()}": str(v) for k, v in settings["jobs"].items()},
        "VISIONSERVE_INSPECT__TRAIN_NUM_CPUS": "1",
    }
    local = cluster["local"]
    started = time.monotonic()
    out = local.run(
        "ray", "job", "submit", "--address", local.dashboard, "--no-wait",
        "--runtime-env-json", json.dumps({"env_vars": env_vars}), "--",
        "python", "-m", "jobs.anomaly_train", "--project", project["id"],
        "--architecture", "padim", "--name", "from-ray-job", "--parameters", '{"image_size": 64}',
    )  # fmt: skip
    submission = next(w.strip("'") for w in out.split() if w.strip("'").startswith("raysubmit_"))
    # The job shows on the inspect API while it runs, with its progress.
    seen: list[tuple[str, float]] = []
    job: dict[str, Any] = {}
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        listed = httpx.get(f"{base}/projects/{project['id']}/jobs", timeout=30).json()
        if listed:
            job = listed[0]
            seen.append((job["status"], job["progress"]))
            if job["status"] in ("completed", "failed", "cancelled"):
                break
        time.sleep(0.25)  # training takes seconds here: look between two heartbeats
    TIMINGS["training_job_s"] = round(time.monotonic() - started, 1)
    assert job.get("status") == "completed", (
        job,
        local.run("ray", "job", "logs", submission, "--address", local.dashboard, check=False)[
            -3000:
        ],
    )
    assert any(status == "running" and 0 < progress < 1 for status, progress in seen), seen
    models = httpx.get(f"{base}/projects/{project['id']}/models", timeout=30).json()
    (model,) = [m for m in models if m["name"] == "from-ray-job"]
    assert model["status"] == "ready" and model["metrics"]["image_auroc"] >= 0.5, model
    logs = local.run("ray", "job", "logs", submission, "--address", local.dashboard)
    # A line per step in the job's log: "job <id> (inspect.train) 40% train [epoch=...]".
    steps = re.findall(rf"job {job['id']} \(inspect\.train\) (\d+)%", logs)
    percents = [int(p) for p in steps]
    assert len(percents) >= 3 and percents == sorted(percents) and percents[-1] >= 90, logs[-2000:]
    # The model serves like any other: the anomaly deployment scores an image with it.
    sample = next(s for s in dataset if s.label == "anomalous")
    r = httpx.post(
        f"{base}/models/{model['id']}/predict",
        files={"file": ("a.png", sample.path.read_bytes())},
        timeout=120,
    )
    assert r.status_code == 200 and r.json()["score"] >= 0, r.text


def test_a_lost_worker_node_loses_no_job(cluster) -> None:  # type: ignore[no-untyped-def]
    import sqlalchemy as sa

    local: LocalCluster = cluster["local"]
    names = node_names(cluster)
    workers = {
        r["pid"]: names[r["node_id"]] for r in local.actors("ServeReplica:visionserve:job-worker")
    }
    assert sorted(workers.values()) == ["head", "worker"], workers
    engine = sa.create_engine(cluster["settings"]["database_url"])
    pages = 30
    with docs_client(cluster, api_key(cluster, "mn-fault")) as client:
        tasks = {
            parse(client, marked_pdf(pages, f"f{n}x"), f"fault{n}.pdf"): f"f{n}x" for n in (1, 2)
        }

        def leases() -> dict[str, tuple[str, str | None, int]]:
            with engine.connect() as conn:
                rows = conn.execute(
                    sa.text(
                        "SELECT j.id, j.status, j.lease_owner, j.attempts FROM jobs j "
                        "JOIN document_tasks t ON t.job_id = j.id WHERE t.id IN :ids"
                    ).bindparams(sa.bindparam("ids", expanding=True)),
                    {"ids": list(tasks)},
                ).all()
            return {r[0]: (r[1], r[2], r[3]) for r in rows}

        def node_of(owner: str | None) -> str | None:
            return workers.get(int(owner.split(":")[1])) if owner else None

        # Both tasks processing: one on each node's job worker (one job each at a time).
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            now = leases()
            if sorted(node_of(o) or "-" for s, o, _ in now.values() if s == "processing") == [
                "head",
                "worker",
            ]:
                break
            time.sleep(0.2)
        else:
            raise AssertionError(f"the tasks were not claimed on both nodes: {leases()}")
        on_worker = next(j for j, (_, o, _) in now.items() if node_of(o) == "worker")
        lost_owner = now[on_worker][1]
        time.sleep(2)  # pages are in flight on both nodes
        killed = time.monotonic()
        local.nodes[1].kill()
        TIMINGS["kill"] = "SIGKILL of the worker node's raylet and workers"

        # /health reports the lost replicas...
        degraded_at = recovered_at = reclaimed_at = None
        states: list[Any] = []
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline and (recovered_at is None or reclaimed_at is None):
            try:
                h = health(cluster["base"])
            except (httpx.HTTPError, ValueError):
                h = None
            if h is not None:
                running = {d: h["replicas"].get(d, {}).get("RUNNING", 0) for d in TWO_REPLICAS}
                states.append((round(time.monotonic() - killed, 1), h["status"], running))
                lost = any(n < 2 for n in running.values())
                if h["status"] != "ok" and lost and degraded_at is None:
                    degraded_at = time.monotonic()
                if h["status"] == "ok" and degraded_at is not None and not lost:
                    recovered_at = time.monotonic()
            # ...and the lost worker's job is claimed by a worker on the head: one that ran
            # before, once its own job is done, or a replica started there in place of the lost.
            status, owner, attempts = leases()[on_worker]
            if reclaimed_at is None and (attempts > 1 or status == "completed"):
                assert owner != lost_owner
                reclaimed_at = time.monotonic()
            time.sleep(0.5)
        assert degraded_at is not None and recovered_at is not None, states
        assert reclaimed_at is not None, leases()
        finished = {t: wait_task(client, t) for t in tasks}
        done_at = time.monotonic()

    TIMINGS.update(
        health_degraded_after_s=round(degraded_at - killed, 1),
        health_recovered_after_s=round(recovered_at - killed, 1),
        reclaimed_after_s=round(reclaimed_at - killed, 1),
        completed_after_s=round(done_at - killed, 1),
        pages_sent_again=pages_sent_again(local.work),
    )
    final = leases()
    assert {s for s, _, _ in final.values()} == {"completed"}, final
    assert final[on_worker][2] == 2, final  # claimed twice: by the lost worker, then on the head
    for task_id, tag in tasks.items():
        task = finished[task_id]
        assert task["status"] == "Succeeded", task["message"]
        assert task["output"]["page_count"] == pages
        text = " ".join(s["text"] for c in task["output"]["chunks"] for s in c["segments"])
        # Every page once: nothing lost, nothing twice.
        counts = [text.count(f"{tag}p{n} ") for n in range(1, pages + 1)]
        assert counts == [1] * pages, counts
    assert len(local.alive_nodes()) == 1


def _png(image: Any) -> bytes:
    import io

    buf = io.BytesIO()
    image.save(buf, "PNG")
    return buf.getvalue()

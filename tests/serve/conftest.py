"""One local Ray + Serve for the whole test session (the machine has two cores)."""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

REPO = Path(__file__).resolve().parents[2]
APP_NAME = "visionserve"
# edit's input and output buckets (the edit serve test creates them).
EDIT_BUCKETS = ("edit-input", "edit-output")


@dataclass
class ServeCluster:
    base_url: str
    home: Path
    database_url: str

    def handle(self, deployment: str):  # type: ignore[no-untyped-def]
        from ray import serve

        return serve.get_deployment_handle(deployment, app_name=APP_NAME)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def serve_cluster(
    tmp_path_factory: pytest.TempPathFactory, ray_session: None, s3_server: Any
) -> Iterator[ServeCluster]:
    from ray import serve

    from graphs.app import build_app
    from visionserve.settings import get_settings

    home = tmp_path_factory.mktemp("serve-home")
    database_url = f"sqlite:///{home / 'visionserve.db'}"
    port = _free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    args = {
        "settings": {
            "home": str(home),
            "database_url": database_url,
            "model_home": str(get_settings().model_home),  # the fetched weights
            "egress": {"allow": ["127.0.0.1"]},
            "jobs": {"lease_s": 3.0, "heartbeat_s": 0.5, "poll_s": 0.1},
            "webhooks": {"backoff_base_s": 0.2, "backoff_max_s": 1.0},
            # Short, so that a 20-page scan (about 5 s) is surely queued while one digital page
            # on a warm cluster still answers in time (about 0.2 s).
            "extract": {"sync_window_s": 2.0},
            # edit's COS buckets in the moto S3 server (tests/serve/test_edit_serve.py).
            "edit": {
                "s3": {
                    "endpoint_url": s3_server.endpoint_url,
                    "access_key_id": s3_server.access_key_id,
                    "secret_access_key": s3_server.secret_access_key,
                },
                "input_bucket": EDIT_BUCKETS[0],
                "output_bucket": EDIT_BUCKETS[1],
            },
        },
        "job_modules": ["tests.sample_jobs"],
        "extra_surfaces": ["tests.sample_jobs:SURFACE"],
        "surfaces": ["cutout", "documents", "extract", "inspect", "edit"],
    }
    serve.run(build_app(args), name=APP_NAME, route_prefix="/")
    base_url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            if httpx.get(f"{base_url}/health", timeout=5).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    else:
        pytest.fail("Serve did not come up within 120 s")
    yield ServeCluster(base_url, home, database_url)
    serve.shutdown()


@pytest.fixture(scope="session")
def edit_buckets(serve_cluster: ServeCluster, s3_server: Any) -> dict[str, Any]:
    """edit's input and output buckets in the S3 server, and a client for them."""
    from visionserve.settings import S3Settings
    from visionserve.store.blobs import s3_client

    client = s3_client(
        S3Settings(
            endpoint_url=s3_server.endpoint_url,
            access_key_id=s3_server.access_key_id,
            secret_access_key=s3_server.secret_access_key,
        )
    )
    for name in EDIT_BUCKETS:
        with contextlib.suppress(client.exceptions.BucketAlreadyOwnedByYou):
            client.create_bucket(Bucket=name)
    return {"client": client, "input": EDIT_BUCKETS[0], "output": EDIT_BUCKETS[1]}

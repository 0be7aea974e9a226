"""inspect training requests, models, jobs, masks, pipelines and devices over HTTP (no Ray).

The job worker is not running here: these tests cover validation, records and status
codes. Training itself, inference and live pipelines run on Ray in tests/serve.
"""

from __future__ import annotations

import io

import httpx
import pytest
from PIL import Image

from tests.api.inspect import test_inspect_crud_api as crud
from tests.api.inspect.test_inspect_crud_api import new_project, png, upload
from visionserve.store.db import session_scope
from visionserve.store.records import utcnow
from visionserve.surfaces.inspect.records import InspectActivePipeline, InspectModel

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
client = crud.client  # the same ASGI client fixture


async def project_with_media(client: httpx.AsyncClient, normal: int = 3, anomalous: int = 1):  # type: ignore[no-untyped-def]
    project = await new_project(client)
    if normal:
        files = [(f"n{n}.png", png(32, 32, (n * 20, 90, 90))) for n in range(normal)]
        assert (await upload(client, project["id"], files, "normal")).status_code == 201
    if anomalous:
        files = [(f"a{n}.png", png(32, 32, (250, 0, n))) for n in range(anomalous)]
        assert (await upload(client, project["id"], files, "anomalous")).status_code == 201
    return project


async def test_trainable_models_list_parameters(client: httpx.AsyncClient) -> None:
    r = await client.get("/trainable-models")
    assert r.status_code == 200
    by_name = {m["name"]: m for m in r.json()}
    assert {"patchcore", "padim", "efficientad", "stfpm", "dfm", "fastflow"} <= set(by_name)
    backbone = by_name["patchcore"]["parameters"]["backbone"]
    assert backbone["default"] == "tf_efficientnet_lite0"
    assert "tf_efficientnet_lite0" in backbone["options"]
    assert by_name["patchcore"]["available"] is True
    # No teacher weights in a fresh model home: listed, but says which file is missing.
    assert by_name["efficientad"]["available"] is False
    assert "pretrained_teacher" in by_name["efficientad"]["unavailable_reason"]


async def test_train_rejects_unknown_architecture_and_parameters(
    client: httpx.AsyncClient,
) -> None:
    project = await project_with_media(client)
    url = f"/projects/{project['id']}/train"
    r = await client.post(url, json={"model_name": "m", "architecture": "yolo"})
    assert r.status_code == 422
    assert "patchcore" in r.json()["detail"] and "padim" in r.json()["detail"]

    r = await client.post(
        url, json={"model_name": "m", "architecture": "patchcore", "parameters": {"bogus": 1}}
    )
    assert r.status_code == 422
    assert "bogus" in r.json()["detail"] and "coreset_sampling_ratio" in r.json()["detail"]

    r = await client.post(
        url,
        json={"model_name": "m", "architecture": "patchcore", "parameters": {"backbone": "vgg"}},
    )
    assert r.status_code == 422 and "tf_efficientnet_lite0" in r.json()["detail"]

    r = await client.post(url, json={"model_name": "m", "architecture": "efficientad"})
    assert r.status_code == 422 and "pretrained_teacher_small.pth" in r.json()["detail"]

    r = await client.post(url, json={"architecture": "patchcore"})  # no model_name
    assert r.status_code == 422 and isinstance(r.json()["detail"], list)
    # Nothing was queued by any of these.
    assert (await client.get(f"/projects/{project['id']}/jobs")).json() == []
    assert (await client.get(f"/projects/{project['id']}/models")).json() == []


async def test_train_needs_normal_images(client: httpx.AsyncClient) -> None:
    project = await project_with_media(client, normal=0, anomalous=2)
    r = await client.post(
        f"/projects/{project['id']}/train", json={"model_name": "m", "architecture": "patchcore"}
    )
    assert r.status_code == 422
    assert "normal" in r.json()["detail"] and "has 0" in r.json()["detail"]
    r = await client.post(
        "/projects/nope/train", json={"model_name": "m", "architecture": "patchcore"}
    )
    assert r.status_code == 404


async def test_train_accepted_then_cancelled_while_queued(client: httpx.AsyncClient) -> None:
    project = await project_with_media(client)
    pid = project["id"]
    r = await client.post(
        f"/projects/{pid}/train",
        json={
            "model_name": "PatchCore v1",
            "architecture": "patchcore",
            "parameters": {"coreset_sampling_ratio": 0.2},
        },
    )
    assert r.status_code == 202, r.text
    accepted = r.json()
    assert accepted["status"] == "pending"

    job = (await client.get(f"/jobs/{accepted['job_id']}")).json()
    assert job["type"] == "training" and job["status"] == "pending" and job["progress"] == 0
    [model] = (await client.get(f"/projects/{pid}/models")).json()
    assert model["id"] == accepted["model_id"] and model["status"] == "training"
    assert model["architecture"] == "patchcore" and model["format"] == "openvino"
    # Defaults are filled in, the explicit value kept.
    assert model["parameters"]["coreset_sampling_ratio"] == 0.2
    assert model["parameters"]["backbone"] == "tf_efficientnet_lite0"

    listed = (await client.get(f"/projects/{pid}/jobs", params={"status": "pending"})).json()
    assert [j["id"] for j in listed] == [accepted["job_id"]]
    assert (await client.get(f"/projects/{pid}/jobs", params={"type": "export"})).json() == []
    assert (
        await client.get(f"/projects/{pid}/jobs", params={"status": "bogus"})
    ).status_code == 422

    # Not ready: no export, no prediction.
    r = await client.get(f"/models/{model['id']}/export", params={"format": "onnx"})
    assert r.status_code == 409 and "training" in r.json()["detail"]

    assert (await client.delete(f"/jobs/{accepted['job_id']}")).status_code == 204
    job = (await client.get(f"/jobs/{accepted['job_id']}")).json()
    assert job["status"] == "cancelled"
    model = (await client.get(f"/models/{model['id']}")).json()
    assert model["status"] == "failed" and "cancelled" in model["error"]
    assert (await client.delete(f"/jobs/{accepted['job_id']}")).status_code == 409
    assert (await client.get("/jobs/nope")).status_code == 404


async def test_train_on_a_snapshot(client: httpx.AsyncClient) -> None:
    project = await project_with_media(client, normal=0, anomalous=1)
    pid = project["id"]
    snap = (await client.post(f"/projects/{pid}/snapshots", json={"name": "empty"})).json()
    files = [(f"n{n}.png", png(32, 32)) for n in range(3)]
    await upload(client, pid, files, "normal")  # after the snapshot: not in it
    body = {"model_name": "m", "architecture": "padim", "snapshot_id": snap["id"]}
    r = await client.post(f"/projects/{pid}/train", json=body)
    assert r.status_code == 422 and "the snapshot has 0" in r.json()["detail"]
    r = await client.post(f"/projects/{pid}/train", json={**body, "snapshot_id": "nope"})
    assert r.status_code == 404


async def test_mask_upload(client: httpx.AsyncClient) -> None:
    project = await project_with_media(client, normal=0, anomalous=1)
    [media] = (await client.get(f"/projects/{project['id']}/media")).json()["items"]
    assert media["has_mask"] is False
    assert (await client.get(f"/media/{media['id']}/mask")).status_code == 404

    mask = Image.new("L", (32, 32), 0)
    mask.paste(200, (4, 4, 12, 12))
    buf = io.BytesIO()
    mask.save(buf, "PNG")
    r = await client.put(f"/media/{media['id']}/mask", files={"file": ("m.png", buf.getvalue())})
    assert r.status_code == 200, r.text
    assert r.json()["has_mask"] is True
    stored = Image.open(io.BytesIO((await client.get(f"/media/{media['id']}/mask")).content))
    assert stored.getpixel((5, 5)) == 255 and stored.getpixel((20, 20)) == 0  # binarised

    r = await client.put(f"/media/{media['id']}/mask", files={"file": ("m.png", png(16, 16))})
    assert r.status_code == 422 and "32x32" in r.json()["detail"]
    r = await client.put(f"/media/{media['id']}/mask", files={"file": ("m.txt", b"not an image")})
    assert r.status_code == 400


def ready_model(settings, project_id: str) -> str:  # type: ignore[no-untyped-def]
    with session_scope(settings.database_url) as s:
        model = InspectModel(
            project_id=project_id,
            name="ready",
            architecture="patchcore",
            parameters={},
            status="ready",
            metrics={"image_auroc": 1.0},
            blob_prefix=f"inspect/projects/{project_id}/models/x/",
        )
        s.add(model)
        s.flush()
        return model.id


async def test_pipeline_crud_and_conflicts(client: httpx.AsyncClient, settings) -> None:  # type: ignore[no-untyped-def]
    project = await new_project(client)
    pid = project["id"]
    model_id = ready_model(settings, pid)
    source = (
        await client.post(
            f"/projects/{pid}/sources",
            json={"type": "video_file", "name": "line", "config": {"path": "x.mp4"}},
        )
    ).json()
    sink = (
        await client.post(
            f"/projects/{pid}/sinks",
            json={"type": "filesystem", "name": "disk", "config": {"output_dir": "out"}},
        )
    ).json()
    body = {
        "name": "Production Line Monitor",
        "model_id": model_id,
        "source_id": source["id"],
        "sink_id": sink["id"],
        "config": {"threshold": 0.6, "fps": 5},
    }
    r = await client.post(f"/projects/{pid}/pipelines", json=body)
    assert r.status_code == 201, r.text
    pipeline = r.json()
    assert pipeline["config"] == {"threshold": 0.6, "fps": 5.0, "emit": "anomalies"}
    assert (await client.post(f"/projects/{pid}/pipelines", json=body)).status_code == 409
    bad = {**body, "name": "other", "config": {"threshold": 3}}
    assert (await client.post(f"/projects/{pid}/pipelines", json=bad)).status_code == 422
    ghost = {**body, "name": "other", "model_id": "nope"}
    r = await client.post(f"/projects/{pid}/pipelines", json=ghost)
    assert r.status_code == 404 and "Model nope" in r.json()["detail"]

    r = await client.patch(f"/pipelines/{pipeline['id']}", json={"config": {"fps": 2}})
    assert r.status_code == 200 and r.json()["config"]["fps"] == 2.0
    # An explicit null name means "unchanged", as for projects (not a NOT NULL violation).
    r = await client.patch(f"/pipelines/{pipeline['id']}", json={"name": None})
    assert r.status_code == 200 and r.json()["name"] == body["name"]
    listed = (await client.get(f"/projects/{pid}/pipelines")).json()
    assert [p["id"] for p in listed] == [pipeline["id"]]

    # While a run of it is live, its model, source and sink cannot be deleted.
    with session_scope(settings.database_url) as s:
        s.add(
            InspectActivePipeline(
                pipeline_id=pipeline["id"], project_id=pid, status="running", metrics={}
            )
        )
    for url in (f"/models/{model_id}", f"/sources/{source['id']}", f"/sinks/{sink['id']}"):
        r = await client.delete(url)
        assert r.status_code == 409 and "running pipeline" in r.json()["detail"], url
    assert (await client.delete(f"/pipelines/{pipeline['id']}")).status_code == 409
    r = await client.patch(f"/pipelines/{pipeline['id']}", json={"name": "x"})
    assert r.status_code == 409
    r = await client.post("/active-pipelines", json={"pipeline_id": pipeline["id"]})
    assert r.status_code == 409 and "already running" in r.json()["detail"]

    with session_scope(settings.database_url) as s:
        for row in s.query(InspectActivePipeline).all():
            row.status, row.stopped_at = "stopped", utcnow()
    assert (await client.delete(f"/models/{model_id}")).status_code == 204
    # The stopped pipeline stays, without a model, and cannot start until it has one.
    assert (await client.get(f"/pipelines/{pipeline['id']}")).json()["model_id"] is None
    r = await client.post("/active-pipelines", json={"pipeline_id": pipeline["id"]})
    assert r.status_code == 409 and "no model" in r.json()["detail"]
    assert (await client.delete(f"/pipelines/{pipeline['id']}")).status_code == 204
    assert (await client.get(f"/pipelines/{pipeline['id']}")).status_code == 404


async def test_devices(client: httpx.AsyncClient) -> None:
    r = await client.get("/devices")
    assert r.status_code == 200
    body = r.json()
    assert isinstance(body["cameras"], list)  # none on a server is a valid answer
    assert body["compute"][0] == {"name": "CPU", "type": "cpu", "runtime": "all"}


async def test_openapi_lists_the_whole_contract(client: httpx.AsyncClient) -> None:
    paths = set((await client.get("/openapi.json")).json()["paths"])
    assert {
        "/projects",
        "/projects/{project_id}/media",
        "/media/{media_id}",
        "/projects/{project_id}/models",
        "/models/{model_id}",
        "/models/{model_id}/export",
        "/trainable-models",
        "/projects/{project_id}/train",
        "/projects/{project_id}/jobs",
        "/jobs/{job_id}",
        "/projects/{project_id}/pipelines",
        "/pipelines/{pipeline_id}",
        "/active-pipelines",
        "/active-pipelines/{active_id}",
        "/active-pipelines/{active_id}/capture",
        "/projects/{project_id}/sources",
        "/sources/{source_id}",
        "/projects/{project_id}/sinks",
        "/sinks/{sink_id}",
        "/devices",
        "/projects/{project_id}/snapshots",
        "/webrtc/offer",
        "/webrtc/candidate",
        "/models/{model_id}/predict",
    } <= paths

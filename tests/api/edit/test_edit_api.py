"""edit's endpoints over HTTP (ASGI, no Ray), every error, and exact callback bodies."""

from __future__ import annotations

import base64
import io
import json

import numpy as np
import pytest
from PIL import Image

from tests.api.edit.conftest import (
    B64_KEYS,
    BATCH_KEYS,
    COS_KEYS,
    FAILED_KEYS,
    b64,
    body_of,
    png,
)
from tests.scenes import iou, object_scene, textured_background
from visionserve.models.edit import capabilities
from visionserve.platform.webhooks import EVENT_ID_HEADER
from visionserve.surfaces.edit import cos
from visionserve.surfaces.edit.schemas import (
    B64Completed,
    BatchCallback,
    CosCompleted,
    ImageFailed,
)
from visionserve.surfaces.edit.tool_documents import NAMES

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


def luminance(img: Image.Image) -> float:
    return float(np.asarray(img.convert("L"), np.float32).mean())


async def test_health_and_cos_config(make_app) -> None:  # type: ignore[no-untyped-def]
    app = await make_app()
    r = await app.client.get("/edit/health")
    assert r.status_code == 200 and r.json() == {"ok": True}
    r = await app.client.get("/edit/cos/config")
    assert r.status_code == 200
    config = r.json()
    assert set(config) == {
        "endpoint",
        "region",
        "input_bucket",
        "output_bucket",
        "input_prefix",
        "output_prefix",
        "presign_expires",
    }
    assert config["input_bucket"] == "input-images" and config["output_bucket"] == "wxo-images"
    assert config["output_prefix"] == "results/batch" and config["presign_expires"] == 900
    assert config["endpoint"] == "http://127.0.0.1:8000/blobs/cos"


async def test_cos_config_names_no_secret(settings_home, make_app) -> None:  # type: ignore[no-untyped-def]
    settings_home.blobs.s3.access_key_id = "AKIA-visible-nowhere"
    settings_home.blobs.s3.secret_access_key = "very-secret"
    app = await make_app(settings_home)
    text = (await app.client.get("/edit/cos/config")).text
    assert "very-secret" not in text and "AKIA-visible-nowhere" not in text


async def test_b64_edit_calls_back_with_exactly_the_contract_fields(make_app, receiver) -> None:  # type: ignore[no-untyped-def]
    app = await make_app()
    source = textured_background((160, 120), seed=3)
    r = await app.post(
        "/process-image-async-b64",
        {"prompt": "make it 20% brighter", "filename": "burger.jpeg", "image_base64": b64(source)},
        receiver.url,
    )
    assert r.status_code == 202, r.text
    assert set(r.json()) == {"accepted", "job_id"} and r.json()["accepted"] is True
    job_id = r.json()["job_id"]
    (hook,) = await app.callbacks(receiver, 1)
    payload = body_of(hook)
    assert set(payload) == B64_KEYS
    B64Completed.model_validate(payload)
    assert payload["status"] == "completed" and payload["job_id"] == job_id
    assert payload["filename"] == "burger.jpeg" and payload["result_mime_type"] == "image/png"
    out = Image.open(io.BytesIO(base64.b64decode(payload["result_image_base64"])))
    assert out.size == source.size
    assert luminance(out) == pytest.approx(luminance(source) * 1.2, rel=0.05)
    assert hook.headers[EVENT_ID_HEADER] == f"job.completed:{job_id}"

    view = (await app.client.get(f"/edit/jobs/{job_id}")).json()
    assert view["state"] == "completed" and view["progress"] == 1.0 and view["kind"] == "b64"
    assert view["result"]["applied"] == ["brightness"] and view["result"]["route"] == "local"
    assert "result_image_base64" not in view["result"]
    (delivery,) = view["deliveries"]
    assert delivery["url"] == receiver.url and delivery["event_id"] == f"job.completed:{job_id}"
    assert app.ctx.blobs.list("edit/inputs/") == []  # the input went with the job


async def test_callback_is_retried_with_the_same_event_id(make_app, receiver) -> None:  # type: ignore[no-untyped-def]
    receiver.script = [503]  # the first delivery fails; the outbox retries
    app = await make_app()
    r = await app.post(
        "/process-image-async-b64",
        {"prompt": "convert to grayscale", "image_base64": b64(textured_background((64, 48)))},
        receiver.url,
    )
    job_id = r.json()["job_id"]
    first, second = await app.callbacks(receiver, 2)
    assert first.headers[EVENT_ID_HEADER] == second.headers[EVENT_ID_HEADER]
    assert first.body == second.body and body_of(second)["filename"] == "image.png"
    for _ in range(50):
        view = (await app.client.get(f"/edit/jobs/{job_id}")).json()
        if view["deliveries"] and view["deliveries"][0]["status"] == "delivered":
            break
        import asyncio

        await asyncio.sleep(0.1)
    (delivery,) = view["deliveries"]
    assert delivery["status"] == "delivered" and delivery["attempts"] == 2
    assert [a["status_code"] for a in delivery["log"]] == [503, 200]


async def test_cos_edit_stores_the_result_and_calls_back_with_its_url(make_app, receiver) -> None:  # type: ignore[no-untyped-def]
    app = await make_app()
    scene, truth = object_scene(size=(192, 144))
    r = await app.post(
        "/process-image-async",
        {
            "prompt": "make the background transparent",  # the contract's example
            "filename": "product.png",
            "image_base64": b64(scene),
        },
        receiver.url,
        header="callbackurl",  # HTTP lowers header names: any case is the same header
    )
    assert r.status_code == 202, r.text
    job_id = r.json()["job_id"]
    (hook,) = await app.callbacks(receiver, 1)
    payload = body_of(hook)
    assert set(payload) == COS_KEYS
    CosCompleted.model_validate(payload)
    assert payload["object_key"] == f"results/{job_id}/product_modified.png"
    assert payload["expires_in"] == 900
    fetched = await app.client.get(payload["result_url"])
    assert fetched.status_code == 200
    out = Image.open(io.BytesIO(fetched.content))
    assert out.mode == "RGBA" and out.size == scene.size
    assert iou(np.asarray(out.getchannel("A")) > 127, truth) >= 0.85
    # The same object, read back from the output bucket.
    stored = cos.output_bucket(app.settings).get(payload["object_key"])
    assert stored == fetched.content


@pytest.mark.parametrize(
    ("body", "headers", "detail"),
    [
        ({"image_base64": "aGk="}, {"callbackUrl": "http://127.0.0.1:9/x"}, "prompt"),
        ({"prompt": "", "image_base64": "aGk="}, {"callbackUrl": "http://127.0.0.1:9/x"}, "prompt"),
        ({"prompt": "brighter", "image_base64": "aGk="}, {}, "callbackUrl"),
        ({"prompt": "brighter", "image_base64": "aGk="}, {"callbackUrl": " "}, "callbackUrl"),
        (
            {"prompt": "brighter", "image_base64": "aGk="},
            {"callbackUrl": "http://169.254.169.254/latest"},
            "callbackUrl refused",
        ),
        (
            {"prompt": "brighter", "image_base64": "aGk="},
            {"callbackUrl": "file:///etc/passwd"},
            "callbackUrl refused",
        ),
        ({"prompt": "brighter"}, {"callbackUrl": "http://127.0.0.1:9/x"}, "image_base64"),
        ({"prompt": 5, "image_base64": "aGk="}, {"callbackUrl": "http://127.0.0.1:9/x"}, "prompt"),
    ],
)
async def test_bad_requests_are_422_with_detail(make_app, body, headers, detail) -> None:  # type: ignore[no-untyped-def]
    app = await make_app()
    for path in ("/process-image-async-b64", "/process-image-async"):
        r = await app.client.post(f"/edit{path}", json=body, headers=headers)
        assert r.status_code == 422, r.text
        assert set(r.json()) == {"detail"} and detail in r.json()["detail"]


async def test_batch_needs_prompt_and_callback(make_app) -> None:  # type: ignore[no-untyped-def]
    app = await make_app()
    r = await app.post("/batch-process-images", {}, "http://127.0.0.1:9/x")
    assert r.status_code == 422 and "prompt" in r.json()["detail"]
    r = await app.post("/batch-process-images", {"prompt": "brighter"}, None)
    assert r.status_code == 422 and r.json() == {"detail": "Missing header: callbackUrl"}
    r = await app.client.post(
        "/edit/batch-process-images", content=b"{not json", headers={"callbackUrl": "x"}
    )
    assert r.status_code == 422 and set(r.json()) == {"detail"}


@pytest.mark.parametrize(
    ("image_base64", "message"),
    [
        ("not base64 at all!!", "image_base64 is not valid base64"),
        (base64.b64encode(b"hello, I am text").decode(), "image"),
        (base64.b64encode(png(Image.new("RGB", (40, 30)))[:60]).decode(), "corrupt"),
    ],
)
async def test_bad_image_data_is_a_failed_callback(
    make_app, receiver, image_base64, message
) -> None:  # type: ignore[no-untyped-def]
    app = await make_app()
    r = await app.post(
        "/process-image-async-b64",
        {"prompt": "make it brighter", "filename": "x.png", "image_base64": image_base64},
        receiver.url,
    )
    assert r.status_code == 202
    (hook,) = await app.callbacks(receiver, 1)
    payload = body_of(hook)
    assert set(payload) == FAILED_KEYS
    ImageFailed.model_validate(payload)
    assert payload["status"] == "failed" and payload["job_id"] == r.json()["job_id"]
    assert payload["filename"] == "x.png" and message in payload["error"]
    assert "Traceback" not in payload["error"]


async def test_a_prompt_no_local_operation_covers_fails_listing_capabilities(
    make_app, receiver
) -> None:  # type: ignore[no-untyped-def]
    app = await make_app()
    r = await app.post(
        "/process-image-async",
        {"prompt": "add a dog to the image", "image_base64": b64(textured_background((64, 48)))},
        receiver.url,
    )
    (hook,) = await app.callbacks(receiver, 1)
    payload = body_of(hook)
    assert set(payload) == FAILED_KEYS and payload["job_id"] == r.json()["job_id"]
    assert "add a dog" in payload["error"] and "no generative backend" in payload["error"]
    assert app.ctx.blobs.list("edit/inputs/") == []  # a failed job's input goes too
    for capability in capabilities()[:3]:
        assert capability in payload["error"]


async def test_job_view_unknown_is_404_detail(make_app) -> None:  # type: ignore[no-untyped-def]
    app = await make_app()
    r = await app.client.get("/edit/jobs/nope")
    assert r.status_code == 404 and r.json() == {"detail": "Job nope not found"}


def _fill_input_bucket(settings, good: int = 2) -> list[str]:  # type: ignore[no-untyped-def]
    bucket = cos.input_bucket(settings)
    names = []
    for i in range(good):
        name = f"photo{i}.png" if i % 2 == 0 else f"photo{i}.jpg"
        fmt = "PNG" if name.endswith("png") else "JPEG"
        bucket.put(name, png(textured_background((96, 72), seed=i), fmt))
        names.append(name)
    bucket.put("broken.png", b"\x89PNG\r\n\x1a\n this is not really a png")
    bucket.put("notes.txt", b"not an image")
    return names


async def test_batch_processes_every_image_and_counts_failures(make_app, receiver) -> None:  # type: ignore[no-untyped-def]
    app = await make_app()
    good = _fill_input_bucket(app.settings, good=3)
    r = await app.post("/batch-process-images", {"prompt": "make it 30% brighter"}, receiver.url)
    assert r.status_code == 202, r.text
    job_id = r.json()["job_id"]
    (hook,) = await app.callbacks(receiver, 1)
    payload = body_of(hook)
    assert set(payload) == BATCH_KEYS  # no "error" unless the batch failed
    BatchCallback.model_validate(payload)
    assert payload["status"] == "completed_with_errors" and payload["job_id"] == job_id
    assert (payload["total_files"], payload["processed"], payload["failed"]) == (4, 3, 1)
    assert payload["fallback_local"] == 0 and payload["total_files_processed"] == 3
    assert payload["output_bucket"] == "wxo-images"
    assert payload["output_prefix"] == f"results/batch/{job_id}/"
    (error,) = payload["errors"]
    assert error.startswith("broken.png: ")
    assert isinstance(payload["duration_seconds"], float)
    out = cos.output_bucket(app.settings)
    written = sorted(out.list(payload["output_prefix"]))
    assert written == sorted(f"results/batch/{job_id}/{cos.result_name(n, 'png')}" for n in good)
    for key, name in zip(written, sorted(good), strict=True):
        source = Image.open(io.BytesIO(cos.input_bucket(app.settings).get(name)))
        result = Image.open(io.BytesIO(out.get(key)))
        assert luminance(result) == pytest.approx(luminance(source) * 1.3, rel=0.06)
    view = (await app.client.get(f"/edit/jobs/{job_id}")).json()
    assert view["state"] == "completed" and view["progress"] == 1.0
    assert view["result"]["total_files"] == 4 and len(view["deliveries"]) == 1
    assert view["result"]["skipped_non_images"] == ["notes.txt"]


async def test_batch_of_clean_images_is_completed(make_app, receiver) -> None:  # type: ignore[no-untyped-def]
    app = await make_app()
    bucket = cos.input_bucket(app.settings)
    bucket.put("a.png", png(textured_background((64, 48), seed=1)))
    await app.post("/batch-process-images", {"prompt": "flip horizontally"}, receiver.url)
    (hook,) = await app.callbacks(receiver, 1)
    payload = body_of(hook)
    assert payload["status"] == "completed" and payload["errors"] == []
    assert (payload["total_files"], payload["processed"], payload["failed"]) == (1, 1, 0)


async def test_batch_with_an_uncovered_prompt_fails_with_error(make_app, receiver) -> None:  # type: ignore[no-untyped-def]
    app = await make_app()
    _fill_input_bucket(app.settings)
    r = await app.post("/batch-process-images", {"prompt": "add a dog"}, receiver.url)
    (hook,) = await app.callbacks(receiver, 1)
    payload = body_of(hook)
    assert set(payload) == BATCH_KEYS | {"error"}
    BatchCallback.model_validate(payload)
    assert payload["status"] == "failed" and payload["job_id"] == r.json()["job_id"]
    assert payload["total_files"] == 0 and payload["errors"] == []
    assert "add a dog" in payload["error"]


async def test_generative_quota_falls_back_to_the_local_plan(  # type: ignore[no-untyped-def]
    settings_home, make_app, receiver, generative_stub
) -> None:
    settings_home.edit.generative.base_url = generative_stub.url
    settings_home.edit.generative.api_key = "sk-test"
    app = await make_app(settings_home)
    _fill_input_bucket(app.settings, good=2)
    r = await app.post(
        "/batch-process-images", {"prompt": "make it brighter and add a dog"}, receiver.url
    )
    (hook,) = await app.callbacks(receiver, 1)
    payload = body_of(hook)
    assert generative_stub.prompts, "the backend was never asked"
    assert payload["status"] == "completed_with_errors" and payload["job_id"] == r.json()["job_id"]
    assert (payload["processed"], payload["fallback_local"], payload["failed"]) == (0, 2, 1)
    assert payload["total_files_processed"] == 2
    assert sorted(payload["errors"])[1:] == [
        "photo0.png: OpenAI billing limit -> fallback local applied",
        "photo1.jpg: OpenAI billing limit -> fallback local applied",
    ]


async def test_generative_backend_edits_what_no_local_operation_does(  # type: ignore[no-untyped-def]
    settings_home, make_app, receiver, generative_stub
) -> None:
    generative_stub.mode = "ok"
    settings_home.edit.generative.base_url = generative_stub.url
    app = await make_app(settings_home)
    r = await app.post(
        "/process-image-async-b64",
        {"prompt": "add a dog to the image", "image_base64": b64(textured_background((64, 48)))},
        receiver.url,
    )
    (hook,) = await app.callbacks(receiver, 1)
    payload = body_of(hook)
    assert set(payload) == B64_KEYS, payload
    out = Image.open(io.BytesIO(base64.b64decode(payload["result_image_base64"])))
    assert out.getpixel((5, 5)) == (10, 200, 30)  # the backend's answer, as it sent it
    view = (await app.client.get(f"/edit/jobs/{r.json()['job_id']}")).json()
    assert view["result"]["route"] == "generative"


@pytest.mark.parametrize("name", NAMES)
async def test_tool_documents_are_served_with_this_server_and_the_payload_schemas(  # type: ignore[no-untyped-def]
    make_app, name
) -> None:
    app = await make_app()
    r = await app.client.get(f"/edit/openapi/watsonx/{name}.json")
    assert r.status_code == 200
    doc = r.json()
    assert doc["openapi"].startswith("3.0") and doc["servers"] == [
        {"url": "http://127.0.0.1:8000/edit"}
    ]
    ((path, methods),) = doc["paths"].items()
    op = methods["post"]
    assert op["operationId"] == name == path.strip("/").replace("-", "_")
    (header,) = op["parameters"]
    assert header == {**header, "name": "callbackUrl", "in": "header", "required": True}
    ((callback,),) = [list(c.values()) for c in op["callbacks"].values()]
    schema = callback["post"]["requestBody"]["content"]["application/json"]["schema"]
    variants = schema.get("oneOf", [schema])
    models = {
        "process_image_async_b64": [B64Completed, ImageFailed],
        "process_image_async": [CosCompleted, ImageFailed],
        "batch_process_images": [BatchCallback],
    }[name]
    for variant, model in zip(variants, models, strict=True):
        assert set(variant["properties"]) == set(model.model_fields)
        assert variant["additionalProperties"] is False
    assert (await app.client.get("/edit/openapi/watsonx/nope.json")).status_code == 404


async def test_a_huge_base64_is_refused_without_decoding_work(
    settings_home, make_app, receiver
) -> None:  # type: ignore[no-untyped-def]
    settings_home.limits.max_download_bytes = 1000
    app = await make_app(settings_home)
    data = b64(textured_background((256, 256)))
    r = await app.post(
        "/process-image-async-b64", {"prompt": "brighter", "image_base64": data}, receiver.url
    )
    assert r.status_code == 202
    (hook,) = await app.callbacks(receiver, 1)
    assert "limit" in body_of(hook)["error"]
    assert json.loads(hook.body)["status"] == "failed"


@pytest.fixture
def s3_settings_home(settings_home, s3_server):  # type: ignore[no-untyped-def]
    """edit's buckets in the moto S3 server (fresh input and output buckets)."""
    import uuid

    from visionserve.settings import S3Settings
    from visionserve.store.blobs import s3_client

    s3 = S3Settings(
        endpoint_url=s3_server.endpoint_url,
        access_key_id=s3_server.access_key_id,
        secret_access_key=s3_server.secret_access_key,
    )
    settings_home.edit.s3 = s3
    suffix = uuid.uuid4().hex[:10]
    settings_home.edit.input_bucket = f"in-{suffix}"
    settings_home.edit.output_bucket = f"out-{suffix}"
    client = s3_client(s3)
    for name in (settings_home.edit.input_bucket, settings_home.edit.output_bucket):
        client.create_bucket(Bucket=name)
    return settings_home


@pytest.mark.services
async def test_cos_result_in_s3_with_a_presigned_url(s3_settings_home, make_app, receiver) -> None:  # type: ignore[no-untyped-def]
    import httpx

    app = await make_app(s3_settings_home)
    config = (await app.client.get("/edit/cos/config")).json()
    assert config["endpoint"] == s3_settings_home.edit.s3.endpoint_url
    assert config["output_bucket"] == s3_settings_home.edit.output_bucket
    source = textured_background((120, 90), seed=5)
    r = await app.post(
        "/process-image-async",
        {"prompt": "resize to 60x45", "filename": "shot.jpg", "image_base64": b64(source, "JPEG")},
        receiver.url,
    )
    job_id = r.json()["job_id"]
    (hook,) = await app.callbacks(receiver, 1)
    payload = body_of(hook)
    assert set(payload) == COS_KEYS, payload
    assert payload["object_key"].startswith(f"results/{job_id}/shot_modified.")
    assert payload["result_url"].startswith(s3_settings_home.edit.s3.endpoint_url)
    assert "X-Amz-Signature" in payload["result_url"] and payload["expires_in"] == 900
    fetched = httpx.get(payload["result_url"])  # straight from the store, no credentials
    assert fetched.status_code == 200
    assert Image.open(io.BytesIO(fetched.content)).size == (60, 45)


@pytest.mark.services
async def test_batch_reads_and_writes_s3_buckets(s3_settings_home, make_app, receiver) -> None:  # type: ignore[no-untyped-def]
    app = await make_app(s3_settings_home)
    _fill_input_bucket(app.settings, good=2)
    r = await app.post("/batch-process-images", {"prompt": "rotate 90 degrees"}, receiver.url)
    job_id = r.json()["job_id"]
    (hook,) = await app.callbacks(receiver, 1)
    payload = body_of(hook)
    assert (payload["total_files"], payload["processed"], payload["failed"]) == (3, 2, 1)
    assert payload["output_bucket"] == s3_settings_home.edit.output_bucket
    keys = cos.output_bucket(app.settings).list(f"results/batch/{job_id}/")
    assert len(keys) == 2
    rotated = Image.open(io.BytesIO(cos.output_bucket(app.settings).get(keys[0])))
    assert rotated.size == (72, 96)


async def test_a_configured_planner_llm_plans_the_edit(settings_home, make_app, receiver) -> None:  # type: ignore[no-untyped-def]
    """The edit deployment asks the chat model (one strict tool) and runs its plan."""
    from tests.unit.edit.loopback import Reply, loopback

    plan = {"steps": [{"op": "flip", "params": {"direction": "vertical"}}], "unsupported": []}
    call = {"id": "c1", "type": "function", "function": {"name": "plan_edits"}}
    call["function"]["arguments"] = json.dumps(plan)  # type: ignore[index]
    message = {"role": "assistant", "content": None, "tool_calls": [call]}
    reply = Reply(body=json.dumps({"choices": [{"index": 0, "message": message}]}).encode())
    source = textured_background((64, 48), seed=9)
    with loopback(lambda seen: reply) as (url, seen):
        settings_home.edit.planner_llm.base_url = f"{url}/v1"
        app = await make_app(settings_home)
        await app.post(
            "/process-image-async-b64",
            {"prompt": "turn it upside down, mirror-wise", "image_base64": b64(source)},
            receiver.url,
        )
        (hook,) = await app.callbacks(receiver, 1)
    assert seen and json.loads(seen[0].body)["messages"][1]["content"].startswith("turn it")
    out = Image.open(io.BytesIO(base64.b64decode(body_of(hook)["result_image_base64"])))
    flipped = np.asarray(source)[::-1]
    assert np.array_equal(np.asarray(out.convert("RGB")), flipped)


@pytest.mark.services
async def test_a_missing_output_bucket_is_a_clear_failed_callback(  # type: ignore[no-untyped-def]
    s3_settings_home, make_app, receiver
) -> None:
    s3_settings_home.edit.output_bucket = "no-such-bucket-here"
    app = await make_app(s3_settings_home)
    r = await app.post(
        "/process-image-async",
        {"prompt": "flip it", "filename": "a.png", "image_base64": b64(Image.new("RGB", (8, 8)))},
        receiver.url,
    )
    (hook,) = await app.callbacks(receiver, 1)
    payload = body_of(hook)
    assert set(payload) == FAILED_KEYS and payload["job_id"] == r.json()["job_id"]
    assert payload["error"] == "COS put_object failed: ClientError: NoSuchBucket"


@pytest.mark.services
async def test_a_missing_input_bucket_fails_the_batch_with_its_error(  # type: ignore[no-untyped-def]
    s3_settings_home, make_app, receiver
) -> None:
    s3_settings_home.edit.input_bucket = "no-such-input-bucket"
    app = await make_app(s3_settings_home)
    await app.post("/batch-process-images", {"prompt": "flip it"}, receiver.url)
    (hook,) = await app.callbacks(receiver, 1)
    payload = body_of(hook)
    assert set(payload) == BATCH_KEYS | {"error"} and payload["status"] == "failed"
    assert payload["error"] == "COS list_objects failed: ClientError: NoSuchBucket"
    assert payload["output_bucket"] == s3_settings_home.edit.output_bucket

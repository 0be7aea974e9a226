"""The VLM engine against a loopback server speaking the OpenAI chat protocol."""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from tests.api.extract.conftest import SCHEMA, TRUTH, invoice_pdf
from tests.llm_stub import openai_stub
from visionserve.errors import BadRequest, ServiceUnavailable
from visionserve.models.extraction.document import load_pages
from visionserve.models.extraction.runner import run_extraction
from visionserve.models.extraction.schema import ExtractionFailed, ExtractionSchema
from visionserve.models.extraction.vlm import UNGROUNDED_CONFIDENCE, VlmExtractor, parse_answer
from visionserve.platform.egress import EgressPolicy
from visionserve.settings import EgressSettings, LlmSettings

EGRESS = EgressPolicy(EgressSettings(allow=["127.0.0.1"]))


def vlm(base_url: str, **kw: Any) -> VlmExtractor:
    settings = LlmSettings(
        base_url=base_url, model=kw.pop("model", "qwen2.5-vl"), api_key="k-123", **kw
    )
    return VlmExtractor(settings, EGRESS)


@pytest.fixture(scope="module")
def pages() -> list[Any]:
    return load_pages(invoice_pdf(), max_pages=5)


def answering(result: Any) -> Callable[[dict[str, Any]], str]:
    return lambda body: result if isinstance(result, str) else json.dumps(result)


async def test_request_follows_the_protocol_and_answer_is_grounded(pages: list[Any]) -> None:
    schema = ExtractionSchema.parse(SCHEMA)
    with openai_stub(answering(TRUTH)) as (url, seen):
        out = await vlm(url).extract(pages, schema, "Dates as printed")
    assert out.result == TRUTH
    (request,) = seen
    assert request["path"] == "/v1/chat/completions" and request["auth"] == "Bearer k-123"
    body = request["body"]
    assert body["model"] == "qwen2.5-vl" and body["temperature"] == 0
    fmt = body["response_format"]
    assert fmt["type"] == "json_schema" and fmt["json_schema"]["strict"] is True
    assert fmt["json_schema"]["schema"] == schema.to_json_schema(strict=True)
    text, image = body["messages"][0]["content"]
    assert "Dates as printed" in text["text"] and "INV-2024-001" in text["text"]
    png = base64.b64decode(image["image_url"]["url"].split(",", 1)[1])
    assert png.startswith(b"\x89PNG")
    meta = out.field_metadata["invoice_number"]
    assert meta["page"] == 1 and "INV-2024-001" in meta["source_text"]
    assert meta["confidence"] >= 0.8 and len(meta["bbox"]) == 4
    assert out.field_metadata["total_amount"]["source_text"].endswith("1,942.92")
    assert 0.8 <= out.confidence <= 1.0


async def test_values_not_on_the_page_are_not_trusted(pages: list[Any]) -> None:
    invented = {**TRUTH, "vendor_name": "Initech Solutions", "invoice_number": None}
    with openai_stub(answering(invented)) as (url, _):
        out = await vlm(url).extract(pages, ExtractionSchema.parse(SCHEMA))
    assert out.field_metadata["vendor_name"] == {
        "confidence": UNGROUNDED_CONFIDENCE,
        "page": None,
        "bbox": None,
        "source_text": None,
    }
    assert out.field_metadata["invoice_number"]["confidence"] == 0.0
    assert out.confidence < 0.7


async def test_arrays_are_grounded_item_by_item(pages: list[Any]) -> None:
    schema = ExtractionSchema.parse({"line_items": [{"description": "string", "amount": "number"}]})
    answer = {"line_items": [{"description": "Consulting services", "amount": 1632.71}]}
    with openai_stub(answering(answer)) as (url, _):
        out = await vlm(url).extract(pages, schema)
    (item,) = out.field_metadata["line_items"]
    assert item["description"]["source_text"] == "Consulting services"
    assert item["amount"]["page"] == 1


@pytest.mark.parametrize(
    "answer",
    ["The invoice total is 1942.92", "[1, 2]", json.dumps({**TRUTH, "total_amount": "lots"})],
)
async def test_malformed_or_unfitting_answers_fail(pages: list[Any], answer: str) -> None:
    with openai_stub(answering(answer)) as (url, _), pytest.raises(ExtractionFailed) as err:
        await vlm(url).extract(pages, ExtractionSchema.parse(SCHEMA))
    assert err.value.code == "extraction_failed"


def test_a_code_fence_around_the_json_is_accepted() -> None:
    assert parse_answer('```json\n{"a": 1}\n```') == {"a": 1}


@contextmanager
def raw_server(status: int, delay_s: float = 0.0) -> Iterator[str]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            time.sleep(delay_s)
            try:
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")
            except OSError:
                pass

        def log_message(self, *a: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize(
    ("status", "words"), [(400, "HTTP 400"), (401, "HTTP 401"), (503, "HTTP 503")]
)
async def test_http_errors_are_unavailable(pages: list[Any], status: int, words: str) -> None:
    with raw_server(status) as url, pytest.raises(ServiceUnavailable) as err:
        await vlm(url).extract(pages, ExtractionSchema.parse(SCHEMA))
    assert words in err.value.message


async def test_a_500_from_the_stub_is_unavailable(pages: list[Any]) -> None:
    with openai_stub() as (url, _), pytest.raises(ServiceUnavailable):
        await vlm(url, model="broken").extract(pages, ExtractionSchema.parse(SCHEMA))


async def test_an_answer_without_choices_is_unavailable(pages: list[Any]) -> None:
    with raw_server(200) as url, pytest.raises(ServiceUnavailable) as err:
        await vlm(url).extract(pages, ExtractionSchema.parse(SCHEMA))
    assert "malformed" in err.value.message


async def test_timeout(pages: list[Any]) -> None:
    with raw_server(200, delay_s=2.0) as url, pytest.raises(ServiceUnavailable) as err:
        started = time.perf_counter()
        await vlm(url, timeout_s=0.5).extract(pages, ExtractionSchema.parse(SCHEMA))
    assert "Timeout" in err.value.message and time.perf_counter() - started < 1.9


async def test_runner_picks_the_engine(pages: list[Any]) -> None:
    class Local:
        def extract(self, *a: Any) -> Any:
            raise AssertionError("auto must use the VLM when one is configured")

    with openai_stub(answering(TRUTH)) as (url, _):
        out = await run_extraction(pages, {"schema": SCHEMA, "engine": "auto"}, Local(), vlm(url))
    assert out["engine"] == "vlm" and out["result"] == TRUTH and out["pages"] == 1
    with pytest.raises(BadRequest):
        await run_extraction(pages, {"schema": SCHEMA, "engine": "vlm"}, Local(), None)

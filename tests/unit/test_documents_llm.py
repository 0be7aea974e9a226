"""llm_processing against a local server speaking the OpenAI chat protocol."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from visionserve.egress import EgressPolicy
from visionserve.errors import ServiceUnavailable
from visionserve.models.documents.llm import LlmClient, wants_llm
from visionserve.models.documents.types import BBox, Segment, SegmentType
from visionserve.settings import EgressSettings, LlmSettings


@pytest.fixture
def openai_server():  # type: ignore[no-untyped-def]
    seen: list[dict] = []  # type: ignore[type-arg]

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            seen.append(
                {"path": self.path, "auth": self.headers.get("Authorization"), "body": body}
            )
            if body["model"] == "broken":
                self.send_response(500)
                self.end_headers()
                return
            text = body["messages"][0]["content"][0]["text"]
            answer = {
                "choices": [
                    {
                        "index": 0,
                        "message": {
                            "role": "assistant",
                            "content": f"<table><tr><td>{text[-12:]}</td></tr></table>",
                        },
                        "finish_reason": "stop",
                    }
                ],
                "model": body["model"],
                "object": "chat.completion",
            }
            data = json.dumps(answer).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *a: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1", seen
    server.shutdown()


def segment() -> Segment:
    return Segment(
        "s1",
        SegmentType.TABLE,
        BBox(0, 0, 10, 10),
        1,
        100,
        100,
        text="a b c d e f g h",
        html="<table></table>",
    )


async def test_llm_fills_html_for_segments_that_ask(openai_server) -> None:  # type: ignore[no-untyped-def]
    url, seen = openai_server
    client = LlmClient(
        LlmSettings(base_url=url, api_key="sk-local", model="tiny"),
        EgressPolicy(EgressSettings(allow=["127.0.0.1"])),
    )
    seg = segment()
    await client.process(seg, {"html": "LLM"})
    assert seg.html == seg.llm == "<table><tr><td> c d e f g h</td></tr></table>"
    (call,) = seen
    assert call["path"] == "/v1/chat/completions" and call["auth"] == "Bearer sk-local"
    assert (
        call["body"]["model"] == "tiny"
        and "HTML" in call["body"]["messages"][0]["content"][0]["text"]
    )


async def test_llm_errors_are_clear(openai_server) -> None:  # type: ignore[no-untyped-def]
    url, _ = openai_server
    policy = EgressPolicy(EgressSettings(allow=["127.0.0.1"]))
    with pytest.raises(ServiceUnavailable, match="HTTP 500"):
        await LlmClient(LlmSettings(base_url=url, model="broken"), policy).process(
            segment(), {"strategy": "LLM"}
        )
    with pytest.raises(ServiceUnavailable, match="unreachable"):
        await LlmClient(LlmSettings(base_url="http://127.0.0.1:9/v1"), policy).process(
            segment(), {"strategy": "LLM"}
        )


def test_which_configs_want_the_llm() -> None:
    assert wants_llm({"strategy": "LLM"}) and wants_llm({"html": "LLM"})
    assert wants_llm({"llm": "Summarise this table"})
    assert not wants_llm({"html": "Auto"}) and not wants_llm(None)

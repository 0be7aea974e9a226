"""A local server speaking the OpenAI chat protocol, on loopback, for LLM tests."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def echo_table(body: dict[str, Any]) -> str:
    """The default answer: the prompt's last 12 characters in a one-cell HTML table."""
    text = body["messages"][0]["content"][0]["text"]
    return f"<table><tr><td>{text[-12:]}</td></tr></table>"


@contextmanager
def openai_stub(
    answer: Callable[[dict[str, Any]], str] = echo_table,
) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """Serve ``POST /v1/chat/completions`` until the block ends.

    Yields:
        The base URL (``http://127.0.0.1:<port>/v1``) and the list of requests seen so
        far, each ``{"path", "auth", "body"}``. The model ``broken`` answers HTTP 500.
    """
    seen: list[dict[str, Any]] = []

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
            reply = {
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": answer(body)},
                        "finish_reason": "stop",
                    }
                ],
                "model": body["model"],
                "object": "chat.completion",
            }
            data = json.dumps(reply).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *a: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1", seen
    finally:
        server.shutdown()
        server.server_close()

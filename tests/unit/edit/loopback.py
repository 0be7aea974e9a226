"""A loopback HTTP server whose answers a test scripts: OpenAI chat completions with
tools, and ``/v1/images/edits`` (multipart), errors and slow answers included."""

from __future__ import annotations

import email.parser
import email.policy
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    form: dict[str, Any] = field(default_factory=dict)  # multipart fields: str or bytes


@dataclass
class Reply:
    status: int = 200
    body: bytes = b""
    content_type: str = "application/json"
    delay_s: float = 0.0


def parse_multipart(content_type: str, body: bytes) -> dict[str, Any]:
    """Multipart form fields: text as str, files as bytes."""
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + body
    )
    form: dict[str, Any] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True)
        form[str(name)] = payload if part.get_filename() else payload.decode()
    return form


@contextmanager
def loopback(answer: Callable[[Seen], Reply]) -> Iterator[tuple[str, list[Seen]]]:
    """Serve until the block ends; yields the base URL and the requests seen."""
    seen: list[Seen] = []

    class Handler(BaseHTTPRequestHandler):
        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            request = Seen(self.command, self.path, dict(self.headers.items()), body)
            ctype = self.headers.get("Content-Type", "")
            if ctype.startswith("multipart/form-data"):
                request.form = parse_multipart(ctype, body)
            seen.append(request)
            reply = answer(request)
            if reply.delay_s:
                time.sleep(reply.delay_s)
            try:
                self.send_response(reply.status)
                self.send_header("Content-Type", reply.content_type)
                self.send_header("Content-Length", str(len(reply.body)))
                self.end_headers()
                self.wfile.write(reply.body)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (a timeout test)

        do_GET = do_POST = _handle

        def log_message(self, *a: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()

"""Request metrics of the ingress: count and time every HTTP request.

Pure ASGI, outermost, so that a refused body (413) and an unhandled error (500) are
counted too. The route tag is the matched route's template (``/documents/api/v1/task/
{task_id}``), read from the scope after routing; a path that matched no route is
``unmatched``, so scanners and typos cannot grow the number of series.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from starlette.routing import Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from visionserve.platform.metrics import REQUEST_LATENCY, REQUESTS, Metrics

PLATFORM = "platform"
UNMATCHED = "unmatched"
# Any other method a client makes up is counted as OTHER (bounded tags).
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def route_template(scope: Scope, root_path: str) -> str:
    """The template of the route that handled ``scope`` (after routing), mounts included.

    Each mount a request passed (a surface, a router inside it) appended its path to
    ``root_path``; the innermost route's own template follows.
    """
    route = scope.get("route")
    if route is None or isinstance(route, Mount):
        return UNMATCHED
    # FastAPI keeps an included router's routes as they were declared and records the
    # route as included (its prefix too) here; a plain Starlette route has it itself.
    effective = scope.get("fastapi", {}).get("effective_route_context")
    template = getattr(effective, "path_format", None) or getattr(route, "path_format", None)
    if not template:
        return UNMATCHED
    return scope.get("root_path", "")[len(root_path) :] + template


class RequestMetricsMiddleware:
    """Records ``visionserve_requests`` and ``visionserve_request_latency_ms``.

    Args:
        app: The ingress app.
        metrics: Where to record.
        mounts: ``(surface name, mount)`` of each surface; other paths are ``platform``.
    """

    def __init__(self, app: ASGIApp, *, metrics: Metrics, mounts: Sequence[tuple[str, str]]):
        self.app = app
        self.metrics = metrics
        # Longest mount first, so /extract/api wins over a shorter prefix.
        self.mounts = sorted(mounts, key=lambda m: len(m[1]), reverse=True)

    def surface_of(self, path: str) -> str:
        for name, mount in self.mounts:
            if path == mount or path.startswith(mount + "/"):
                return name
        return PLATFORM

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path, root_path = scope.get("path", "/"), scope.get("root_path", "")
        started = time.perf_counter()
        status = 500  # what the client gets when an error escapes before a response

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            surface = self.surface_of(path)
            route = route_template(scope, root_path)
            elapsed_ms = (time.perf_counter() - started) * 1000.0
            self.metrics.inc(
                REQUESTS,
                {
                    "surface": surface,
                    "route": route,
                    "method": method if (method := scope.get("method")) in METHODS else "OTHER",
                    "status": str(status),
                },
            )
            self.metrics.observe(REQUEST_LATENCY, elapsed_ms, {"surface": surface, "route": route})

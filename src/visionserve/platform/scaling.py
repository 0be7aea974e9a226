"""Whether a deployment that is changing size is doing so healthily (``/health``).

Serve reports UPSCALING both while a new replica starts normally and while it waits,
possibly forever, for resources no node has. Serve's own message tells the two apart:
after 30 s a replica still waiting to be placed gets "... have taken more than 30s to
be scheduled ... Resources required for each replica: {...}, total resources
available: {...}"; one placed but slow in ``__init__`` gets "... to initialize".
"""

from __future__ import annotations

import re
from typing import Any

# Replica states of a replica that is not serving yet (Serve's, and the placement
# phase some versions report apart).
NOT_YET = ("STARTING", "PENDING_ALLOCATION", "PENDING_INITIALIZATION", "RECOVERING", "UPDATING")
_RESOURCES = re.compile(
    r"Resources required for each replica: (?P<need>\{.*?\}), "
    r"total resources available: (?P<have>\{.*?\})"
)


def scaling(status: str, replicas: dict[str, Any]) -> dict[str, str] | None:
    """``{"state", "reason"}`` of a deployment that is changing size, else None.

    ``state`` is ``up`` or ``down`` (a healthy resize in progress), ``stuck`` (a new
    replica has waited more than Serve's 30 s for resources; ``reason`` says what it
    needs and what is free) or ``slow`` (placed, but its start-up runs past 30 s).

    Args:
        status: Serve's deployment status (HEALTHY, UPSCALING, DOWNSCALING, ...).
        replicas: ``{"replicas": {state: count}, "message": Serve's why}``.
    """
    message = str(replicas.get("message") or "")
    waiting = sum(n for s, n in (replicas.get("replicas") or {}).items() if s in NOT_YET)
    if status not in ("UPSCALING", "DOWNSCALING") and not (waiting and message):
        return None
    if waiting and "to be scheduled" in message:
        found = _RESOURCES.search(message)
        reason = (
            f"{waiting} replica(s) waiting for resources: each needs {found['need']}, "
            f"free {found['have']}"
            if found
            else f"{waiting} replica(s) waiting for resources"
        )
        return {"state": "stuck", "reason": reason}
    if waiting and "to initialize" in message:
        return {"state": "slow", "reason": f"{waiting} replica(s) slow to initialize"}
    if status == "DOWNSCALING":
        return {"state": "down", "reason": "stopping replicas above the target"}
    if status == "UPSCALING":
        return {"state": "up", "reason": f"{waiting} replica(s) starting"}
    return None

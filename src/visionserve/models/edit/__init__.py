"""The edit engine: a prompt becomes a validated plan of image operations that run locally.

Usage::

    planner = Planner(Embedder())              # rules + MiniLM similarity
    plan = planner.plan("make it 20% brighter, then remove the background")
    result = await run_plan(plan, image, LocalModelOps(model_home), max_output_pixels=32_000_000)

Pure: no Ray, no FastAPI. The ingress backs :class:`ModelOps` with deployment handles.
``Planner.plan`` is synchronous (MiniLM runs on the CPU: call it in a thread from async
code); ``LlmPlanner.plan`` is a coroutine (HTTP) that falls back to the rule planner.
"""

from visionserve.models.edit.catalogue import OPERATIONS, capabilities, validate_params
from visionserve.models.edit.engines import LocalEngines, local_engines
from visionserve.models.edit.generative import GenerativeBackend, GenerativeFailed, QuotaExceeded
from visionserve.models.edit.llm_planner import LlmPlanner
from visionserve.models.edit.plan import Plan, Step
from visionserve.models.edit.planner import Planner
from visionserve.models.edit.runner import (
    EditResult,
    LocalModelOps,
    ModelOps,
    check_plan_size,
    run_plan,
)

__all__ = [
    "OPERATIONS",
    "EditResult",
    "GenerativeBackend",
    "GenerativeFailed",
    "LlmPlanner",
    "LocalEngines",
    "LocalModelOps",
    "ModelOps",
    "Plan",
    "Planner",
    "QuotaExceeded",
    "Step",
    "capabilities",
    "check_plan_size",
    "local_engines",
    "run_plan",
    "validate_params",
]

"""In-process stand-ins for Serve handles: they run the real deployment classes.

``handle.method.remote(*args)`` returns an asyncio Task (awaitable, cancellable),
and arguments that are pending calls are awaited first, as Serve resolves
``DeploymentResponse`` arguments. No Ray involved.
"""

from __future__ import annotations

import asyncio
import inspect
from typing import Any


class _Method:
    def __init__(self, target: Any, name: str, record: list[str] | None, label: str) -> None:
        self.fn = getattr(target, name)
        self.record, self.call_name = record, f"{label}.{name}"

    def remote(self, *args: Any, **kwargs: Any) -> asyncio.Task[Any]:
        if self.record is not None:
            self.record.append(self.call_name)

        async def call() -> Any:
            args_ = [await a if isinstance(a, asyncio.Future) else a for a in args]
            result = self.fn(*args_, **kwargs)
            return await result if inspect.isawaitable(result) else result

        return asyncio.ensure_future(call())


class LocalHandle:
    """Wraps an instance of a deployment class (``Deployment.func_or_class(...)``).

    With ``record``, every ``.remote()`` call appends ``"<label>.<method>"`` to it, so a
    test can assert which remote calls a request made.
    """

    def __init__(self, target: Any, record: list[str] | None = None, label: str = "") -> None:
        self._target = target
        self._record = record
        self._label = label or type(target).__name__

    def __getattr__(self, name: str) -> _Method:
        return _Method(self._target, name, self._record, self._label)


def instance(deployment: Any, *args: Any, **kwargs: Any) -> Any:
    """Construct the class behind a Serve deployment, outside Serve.

    ``@serve.batch`` methods need a replica context; here each call becomes a batch
    of one, through the very same method body.
    """
    obj = deployment.func_or_class(*args, **kwargs)
    for name, attr in inspect.getmembers(type(obj), inspect.isfunction):
        inner = getattr(attr, "__wrapped__", None)
        if inner is not None and hasattr(attr, "set_max_batch_size"):  # a @serve.batch method
            setattr(obj, name, _batch_of_one(obj, inner))
    return obj


def _batch_of_one(obj: Any, inner: Any) -> Any:
    async def call(*args: Any) -> Any:
        (result,) = await inner(obj, *[[a] for a in args])
        return result

    return call

"""Runtime fixes that must run before torchvision, timm or anomalib are imported.

The CPU torch wheel pairs with a torchvision wheel whose ``_C.so`` is linked against
CUDA libraries, so the extension fails to load; torchvision then swallows the error
but ``_meta_registrations`` still registers fake kernels for ``torchvision::nms`` and
``torchvision::qnms`` unconditionally, and ``import torchvision`` (hence timm and
anomalib) dies with "operator torchvision::nms does not exist". Defining those two
schemas with a pure-torch NMS is enough for anomalib's image models. Where the real
extension loads (a matching CUDA build) nothing is changed. See
docs/dev-notes/inspect-spike.md, section 2.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import logging
import math
import os
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # torch is imported lazily: the inference path never loads it
    import torch

log = logging.getLogger(__name__)

# The op definitions live only as long as this Library object: keep a reference.
_LIB: Any = None
_STATE = "not-run"
# Re-entrant: install() looks torchvision up, which comes back through the import hook.
_INSTALL_LOCK = threading.RLock()


def _op_exists(name: str) -> bool:
    import torch

    try:
        getattr(torch.ops.torchvision, name).default  # noqa: B018 (raises when missing)
        return True
    except (AttributeError, RuntimeError):
        return False


def _real_extension_loads() -> bool:
    """Load torchvision's own ``_C`` library the way torchvision would, without importing it."""
    import torch

    spec = importlib.util.find_spec("torchvision")
    if spec is None or not spec.submodule_search_locations:
        return True  # no torchvision at all: nothing to fix
    for folder in spec.submodule_search_locations:
        for fname in os.listdir(folder):
            if fname.startswith("_C.") and fname.endswith((".so", ".pyd")):
                try:
                    torch.ops.load_library(os.path.join(folder, fname))
                    return True
                except (OSError, ImportError, RuntimeError):
                    return False
    return False


def _nms(dets: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Greedy NMS with the C++ kernel's semantics (indices sorted by descending score)."""
    import torch

    if dets.numel() == 0:
        return torch.empty((0,), dtype=torch.long, device=dets.device)
    order = scores.argsort(descending=True)
    b = dets.float()[order]
    area = (b[:, 2] - b[:, 0]).clamp(min=0) * (b[:, 3] - b[:, 1]).clamp(min=0)
    lt = torch.maximum(b[:, None, :2], b[None, :, :2])
    rb = torch.minimum(b[:, None, 2:], b[None, :, 2:])
    wh = (rb - lt).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    union = (area[:, None] + area[None, :] - inter).clamp(min=torch.finfo(torch.float32).tiny)
    iou = inter / union
    suppressed = torch.zeros(len(b), dtype=torch.bool, device=dets.device)
    keep = []
    for i in range(len(b)):
        if not suppressed[i]:
            keep.append(i)
            suppressed |= iou[i] > iou_threshold
    return order[torch.tensor(keep, dtype=torch.long, device=dets.device)]


def install() -> str:
    """Define ``torchvision::nms``/``qnms`` when torchvision's extension cannot load.

    Idempotent. Do not register a fake (meta) kernel: torchvision registers its own
    and a second registration raises.

    Returns:
        What happened: ``"shim"`` (ops defined here), ``"native"`` (the real extension
        loaded), ``"op-exists"``, ``"already-imported"`` (too late to act; if that
        import succeeded it did not need us) or the state of an earlier call.
    """
    with _INSTALL_LOCK:
        return _install_locked()


def _install_locked() -> str:
    global _LIB, _STATE
    if _STATE != "not-run":
        return _STATE
    # Looking torchvision up below re-enters through the import hook: answer it early.
    _STATE = "installing"
    state = "failed"
    try:
        import torch

        if "torchvision" in sys.modules:
            state = "already-imported"
        elif _op_exists("nms"):
            state = "op-exists"
        elif _real_extension_loads():
            state = "native"
        else:
            lib = torch.library.Library("torchvision", "DEF")
            for op in ("nms", "qnms"):
                lib.define(f"{op}(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
                lib.impl(op, _nms, "CompositeExplicitAutograd")
            _LIB, state = lib, "shim"
    finally:
        _STATE = state
    log.debug("torchvision compat: %s", _STATE)
    return _STATE


class _BeforeTorchvision(importlib.abc.MetaPathFinder):
    """Runs :func:`install` the moment anything first imports torchvision."""

    # It stays in sys.meta_path (removing itself mid-lookup would make importlib skip
    # the next finder); after the first run it is a string compare per import.
    def find_spec(self, fullname: str, path: Any, target: Any = None) -> None:
        if fullname == "torchvision" and _STATE == "not-run":
            install()
        return None  # let the normal finders import it


_HOOK = _BeforeTorchvision()


def install_hook() -> None:
    """Arrange for :func:`install` to run before torchvision's first import.

    Costs nothing now (torch is not imported), so the package can call it at import
    time while the OpenVINO inference path stays free of torch. Runs :func:`install`
    at once when torch is already loaded.
    """
    if _STATE != "not-run" or "torchvision" in sys.modules:
        return
    if "torch" in sys.modules:
        install()
    elif _HOOK not in sys.meta_path:
        sys.meta_path.insert(0, _HOOK)


def uninstall_hook() -> None:
    if _HOOK in sys.meta_path:
        sys.meta_path.remove(_HOOK)


def cpu_allowance() -> int:
    """CPUs this process may use: the smallest of ``OMP_NUM_THREADS`` (Ray sets it to an
    actor's ``num_cpus``), the cgroup CPU quota (containers) and the affinity mask."""
    limits = []
    try:
        limits.append(len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        limits.append(os.cpu_count() or 1)
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            limits.append(math.ceil(int(quota) / int(period)))
    except (OSError, ValueError):
        pass
    omp = os.environ.get("OMP_NUM_THREADS", "")
    if omp.isdigit() and int(omp) > 0:
        limits.append(int(omp))
    return max(1, min(limits))


def threads(n: int | None = None) -> int:
    """Set torch's intra-op threads to ``n`` or to the process CPU allowance.

    torch defaults to every core of the machine, which oversubscribes a node that runs
    several Ray workers.

    Args:
        n: Threads to use; None means :func:`cpu_allowance`.

    Returns:
        The number set.
    """
    import torch

    n = n or cpu_allowance()
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return n

"""ONNX Runtime sessions, built in one place for every model family.

The execution provider is chosen here and nowhere else: CUDA when the installed
onnxruntime build offers it (the ``gpu`` extra installs onnxruntime-gpu in place
of onnxruntime), then CPU.
"""

from __future__ import annotations

import logging
from pathlib import Path

import onnxruntime as ort

log = logging.getLogger(__name__)


def onnx_providers(prefer_gpu: bool = True) -> list[str]:
    """Execution providers in order of preference.

    Args:
        prefer_gpu: Put CUDA first when this onnxruntime build has it.

    Returns:
        ``["CUDAExecutionProvider", "CPUExecutionProvider"]`` or ``["CPUExecutionProvider"]``.
    """
    if prefer_gpu and "CUDAExecutionProvider" in ort.get_available_providers():
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


def make_session(
    path: str | Path, *, threads: int | None = None, prefer_gpu: bool = True
) -> ort.InferenceSession:
    """Open an ONNX model with full graph optimisation on the preferred provider.

    Args:
        path: The ``.onnx`` file.
        threads: Intra-op threads; None lets onnxruntime use every core. Set it
            to the CPUs a Ray replica was given, or replicas oversubscribe the node.
        prefer_gpu: Use CUDA when available.

    Returns:
        The session.
    """
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads is not None:
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
    providers = onnx_providers(prefer_gpu)
    session = ort.InferenceSession(str(path), sess_options=opts, providers=providers)
    log.info("loaded %s on %s", Path(path).name, session.get_providers()[0])
    return session

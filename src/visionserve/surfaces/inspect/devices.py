"""What this node can see: cameras and compute devices (``GET /inspect/api/devices``)."""

from __future__ import annotations

import logging

from visionserve.surfaces.inspect import schemas as i

log = logging.getLogger(__name__)


def compute_devices(cluster_gpus: int = 0) -> list[i.ComputeDevice]:
    """CPU plus every accelerator OpenVINO, ONNX Runtime or the Ray cluster reports.

    Each runtime is asked on its own: one that is missing or broken hides only
    its own devices.
    """
    found = [i.ComputeDevice(name="CPU", type="cpu", runtime="all")]
    try:
        import openvino as ov

        core = ov.Core()
        for dev in core.available_devices:
            if dev == "CPU":
                continue
            kind = "gpu" if dev.startswith("GPU") else "npu" if dev.startswith("NPU") else "other"
            name = core.get_property(dev, "FULL_DEVICE_NAME")
            found.append(i.ComputeDevice(name=f"{dev}: {name}", type=kind, runtime="openvino"))
    except Exception:
        log.warning("OpenVINO could not list devices", exc_info=True)
    try:
        import onnxruntime as ort

        for provider in ort.get_available_providers():
            if provider in ("CPUExecutionProvider", "AzureExecutionProvider"):
                continue
            found.append(i.ComputeDevice(name=provider, type="gpu", runtime="onnxruntime"))
    except Exception:
        log.warning("ONNX Runtime could not list providers", exc_info=True)
    # The cluster's count comes from Ray (injected), not torch: importing torch would
    # cost the ingress a few hundred MB for one list.
    for n in range(cluster_gpus):
        found.append(i.ComputeDevice(name=f"Ray GPU {n}", type="gpu", runtime="ray"))
    return found


def list_devices(cluster_gpus: int = 0) -> i.Devices:
    from visionserve.surfaces.inspect.live.sources import list_cameras

    cameras = [i.Camera(index=c["index"], name=c["name"]) for c in list_cameras()]
    return i.Devices(cameras=cameras, compute=compute_devices(cluster_gpus))

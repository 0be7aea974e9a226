"""VisionServe: self-hosted image and document AI serving on Ray Serve."""

from visionserve import torch_compat

__version__ = "0.1.0"

# Anything may import torchvision (anomalib, timm, transformers): make it loadable
# with the CPU torch first. Free until then: it imports nothing now.
torch_compat.install_hook()

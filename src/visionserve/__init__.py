"""VisionServe: self-hosted image and document AI serving on Ray Serve."""

__version__ = "0.1.0"

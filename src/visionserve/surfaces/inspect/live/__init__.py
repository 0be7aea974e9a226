"""Live inspect pipelines: frame sources, result sinks, the runner loop and WebRTC preview.

Nothing here depends on Ray; the inspect deployment wraps :class:`~.runner.PipelineRunner`
in an actor and owns one :class:`~.webrtc.PeerHub` per active pipeline.
"""

"""The HTTP ingress: a FastAPI app factory with one sub-application per surface."""

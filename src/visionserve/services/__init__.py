"""Business logic per surface, between the thin routers and the Serve graphs."""

"""Durable state: records (SQLAlchemy), blobs, the job queue, idempotency and limits."""

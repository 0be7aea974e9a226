"""edit's request, response and callback bodies, exactly as its contract lists them.

The callback models forbid extra fields: watsonx Orchestrate rejects a payload that
deviates from the tool document's callback schema, so every payload is built
through one of these and checked on the way out.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

MAX_ERRORS = 20


class ImageRequest(BaseModel):
    """``POST /process-image-async-b64`` and ``/process-image-async``."""

    prompt: str = Field(min_length=1, max_length=4000, description="What to change")
    filename: str | None = Field(None, max_length=512, description="For correlation")
    image_base64: str = Field(min_length=1, description="Base64 image, without a data: prefix")


class BatchRequest(BaseModel):
    """``POST /batch-process-images``."""

    prompt: str = Field(min_length=1, max_length=4000)


class Accepted(BaseModel):
    accepted: Literal[True] = True
    job_id: str


class CosConfig(BaseModel):
    endpoint: str
    region: str
    input_bucket: str
    output_bucket: str
    input_prefix: str
    output_prefix: str
    presign_expires: int


class _Callback(BaseModel):
    model_config = ConfigDict(extra="forbid")


class B64Completed(_Callback):
    status: Literal["completed"] = "completed"
    job_id: str
    filename: str
    result_image_base64: str
    result_mime_type: str


class CosCompleted(_Callback):
    status: Literal["completed"] = "completed"
    job_id: str
    filename: str
    object_key: str
    result_url: str
    expires_in: int


class ImageFailed(_Callback):
    status: Literal["failed"] = "failed"
    job_id: str
    filename: str
    error: str


class BatchCallback(_Callback):
    status: Literal["completed", "completed_with_errors", "failed"]
    job_id: str
    total_files: int
    processed: int
    failed: int
    fallback_local: int
    duration_seconds: float
    total_files_processed: int
    output_bucket: str
    output_prefix: str
    errors: list[str] = Field(max_length=MAX_ERRORS)
    error: str | None = None

    def payload(self) -> dict[str, Any]:
        """The body to send: ``error`` only when the batch failed."""
        return self.model_dump(exclude_none=self.error is None)


class Attempt(BaseModel):
    attempt: int
    status_code: int | None
    error: str | None
    duration_ms: float
    at: datetime


class Delivery(BaseModel):
    event_id: str
    url: str
    status: str
    attempts: int
    last_status_code: int | None
    last_error: str | None
    created_at: datetime
    delivered_at: datetime | None
    log: list[Attempt]


class JobView(BaseModel):
    """``GET /edit/jobs/{id}``: state, progress and the callback's delivery log."""

    job_id: str
    kind: Literal["b64", "cos", "batch"]
    state: str
    progress: float
    message: str | None
    metrics: dict[str, Any] | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    error: str | None
    # The result without its image (a b64 result's size is given instead).
    result: dict[str, Any] | None
    callback_url: str | None
    deliveries: list[Delivery]

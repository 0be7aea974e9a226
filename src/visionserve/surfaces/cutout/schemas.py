"""cutout request/response models (contract: bg-removal-shotgun-api.md)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

OutputFormat = Literal["png", "webp"]
ResultStatus = Literal["success", "error"]


class ImageInput(BaseModel):
    """One of ``image`` (base64) or ``image_url`` is required (checked by the service)."""

    model_config = ConfigDict(extra="ignore")

    image: str | None = Field(None, description="Base64-encoded image data (data: URI allowed)")
    image_url: str | None = Field(None, max_length=4096, description="URL to fetch the image from")
    output_format: OutputFormat = "png"
    webhook_url: str | None = Field(
        None, max_length=4096, description="Process asynchronously and POST the result here"
    )
    webhook_secret: str | None = Field(None, max_length=512)
    return_base64: bool = Field(True, description="Inline results as base64 (else image_url only)")


class RemoveBackgroundRequest(ImageInput):
    include_models: list[str] = Field(
        default_factory=lambda: ["all"],
        max_length=32,
        description='"all", "best" or model ids such as "local_u2netp"',
    )
    image_category: str | None = Field(
        None, max_length=64, description='With "best": pick the model users prefer for this'
    )
    timeout_s: float | None = Field(None, gt=0, le=300, description="Per-model timeout")


class UpscaleRequest(ImageInput):
    scale_factor: Literal[2, 4] = 4
    preserve_alpha: bool = True
    method: str = Field("lanczos", description='"lanczos", "waifu2x-cunet" or "waifu2x-upconv7"')


class ProcessRequest(ImageInput):
    bg_models: list[str] = Field(default_factory=lambda: ["all"], max_length=32)
    upscale_factor: Literal[2, 4] = 4
    method: str = "lanczos"
    image_category: str | None = Field(None, max_length=64)
    timeout_s: float | None = Field(None, gt=0, le=300)


class Dimensions(BaseModel):
    width: int
    height: int


class ModelResult(BaseModel):
    model_id: str
    model_name: str | None = None
    status: ResultStatus
    image_base64: str | None = None
    image_url: str | None = None
    error: str | None = None
    processing_time_ms: int
    cost_usd: float = 0.0


class RemoveBackgroundResponse(BaseModel):
    job_id: str
    status: Literal["completed", "partial"]
    processing_time_ms: int
    results: list[ModelResult]
    total_cost_usd: float


class UpscaleResponse(BaseModel):
    job_id: str
    status: Literal["completed"] = "completed"
    input_dimensions: Dimensions
    output_dimensions: Dimensions
    scale_factor: int
    alpha_preserved: bool
    method: str
    processing_time_ms: int
    image_base64: str | None = None
    image_url: str | None = None
    cost_usd: float = 0.0


class ProcessResult(BaseModel):
    model_id: str
    model_name: str | None = None
    bg_removal_status: ResultStatus
    upscale_status: ResultStatus | Literal["skipped"]
    input_dimensions: Dimensions
    output_dimensions: Dimensions | None = None
    image_base64: str | None = None
    image_url: str | None = None
    error: str | None = None
    processing_time_ms: int
    cost_usd: float = 0.0


class ProcessResponse(BaseModel):
    job_id: str
    status: Literal["completed", "partial"]
    processing_time_ms: int
    results: list[ProcessResult]
    total_cost_usd: float


class AcceptedResponse(BaseModel):
    job_id: str
    status: Literal["queued"] = "queued"
    status_url: str


class LogSelectionRequest(BaseModel):
    job_id: str = Field(..., max_length=64)
    selected_model_id: str = Field(..., max_length=64)
    image_category: str | None = Field(None, max_length=64)
    notes: str | None = Field(None, max_length=2000)


class LogSelectionResponse(BaseModel):
    status: Literal["logged"] = "logged"
    selection_id: str


class ModelPreference(BaseModel):
    model_id: str
    selections: int
    offered: int
    win_rate: float


class PreferencesResponse(BaseModel):
    total_selections: int
    models: list[ModelPreference]
    by_category: dict[str, list[ModelPreference]]


class JobStatusResponse(BaseModel):
    job_id: str
    kind: str
    status: Literal["queued", "processing", "completed", "failed", "cancelled"]
    progress: float
    created_at: str
    finished_at: str | None = None
    result: dict | None = None  # type: ignore[type-arg]
    error: str | None = None
    # The failure's public category ("invalid_input", "internal", ...) and whether
    # the same request may succeed later.
    error_category: str | None = None
    retryable: bool | None = None

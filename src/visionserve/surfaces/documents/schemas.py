"""documents request/response models (contract: chunkr-api.md).

The task configuration is :class:`visionserve.models.documents.config.Configuration`,
the one model the pipeline reads too; the requests here extend it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, RootModel

from visionserve.models.documents.config import (
    ChunkProcessing,
    Configuration,
    ErrorHandling,
    LlmProcessing,
    OcrStrategy,
    SegmentationStrategy,
    SegmentProcessing,
)

TaskStatus = Literal["Starting", "Processing", "Succeeded", "Failed", "Cancelled"]


class ErrorMessage(RootModel[str]):
    """The contract's error body, for every 4xx and 5xx: a bare JSON string."""

    model_config = ConfigDict(
        json_schema_extra={"examples": ["Task not found", "Usage limit exceeded"]}
    )


class CreateTask(Configuration):
    file: str = Field(..., min_length=1, description="URL or base64-encoded file")
    file_name: str | None = Field(None, max_length=500)


class UpdateTask(BaseModel):
    """A PATCH: the fields given replace the task's; each is validated as at creation."""

    model_config = ConfigDict(extra="ignore")

    chunk_processing: ChunkProcessing | None = None
    expires_in: int | None = Field(None, ge=1, le=10 * 365 * 24 * 3600)
    high_resolution: bool | None = None
    ocr_strategy: OcrStrategy | None = None
    segmentation_strategy: SegmentationStrategy | None = None
    segment_processing: SegmentProcessing | None = None
    error_handling: ErrorHandling | None = None
    llm_processing: LlmProcessing | None = None


class BoundingBox(BaseModel):
    left: float
    top: float
    width: float
    height: float


class OcrResult(BaseModel):
    bbox: BoundingBox
    text: str
    confidence: float | None


class SegmentOut(BaseModel):
    segment_id: str
    segment_type: str
    bbox: BoundingBox
    confidence: float | None
    page_number: int
    page_width: float
    page_height: float
    text: str
    content: str
    html: str
    markdown: str
    llm: str | None = None
    image: str | None = None
    ocr: list[OcrResult] = Field(default_factory=list)


class ChunkOut(BaseModel):
    chunk_id: str
    chunk_length: int
    segments: list[SegmentOut]
    embed: str | None = Field(None, description="The text to embed for this chunk")
    embedding: list[float] | None = Field(
        None, description="all-MiniLM-L6-v2 vector (384-d) when chunk_processing.embeddings"
    )


class Output(BaseModel):
    chunks: list[ChunkOut] = Field(default_factory=list)
    file_name: str | None = None
    page_count: int | None = None
    pdf_url: str | None = None
    extracted_json: Any = None


class ConfigurationOut(Configuration):
    input_file_url: str | None = None


class TaskResponse(BaseModel):
    task_id: str
    status: TaskStatus
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    expires_at: datetime | None = None
    message: str
    task_url: str | None = None
    configuration: ConfigurationOut
    output: Output | None = None


class MonthlyUsage(BaseModel):
    usage: int
    usage_limit: int
    usage_type: str = "Page"
    unit: str = "Page"
    created_at: datetime
    updated_at: datetime

"""documents request/response models (contract: chunkr-api.md)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

TaskStatus = Literal["Starting", "Processing", "Succeeded", "Failed", "Cancelled"]
OcrStrategy = Literal["All", "Auto"]
SegmentationStrategy = Literal["LayoutAnalysis", "Page"]
ErrorHandling = Literal["Fail", "Continue"]
SEGMENT_KEYS = (
    "title",
    "section_header",
    "text",
    "list_item",
    "table",
    "picture",
    "caption",
    "formula",
    "footnote",
    "page_header",
    "page_footer",
    "page",
)


class ChunkProcessing(BaseModel):
    model_config = ConfigDict(extra="allow")

    target_length: int = Field(512, ge=0, le=100_000)
    tokenizer: str = Field(
        "Word",
        max_length=200,
        description=(
            "Word, Cl100kBase, XlmRobertaBase, BertBaseUncased or a Hugging Face model name "
            "whose tokenizer.json is in <model_home>/tokenizers/<name>/"
        ),
    )
    ignore_headers_and_footers: bool = True
    embeddings: bool = Field(False, description="Also compute all-MiniLM-L6-v2 vectors")


class SegmentProcessingConfig(BaseModel):
    """chunkr's per-type options; unknown keys are kept and passed along."""

    model_config = ConfigDict(extra="allow")

    html: Literal["Auto", "LLM"] | None = None
    markdown: Literal["Auto", "LLM"] | None = None
    crop_image: Literal["All", "Auto"] | None = None
    strategy: Literal["Auto", "LLM", "Ignore"] | None = None
    format: Literal["Html", "Markdown"] | None = None
    llm: str | None = None
    embed_sources: list[str] | None = None


class LlmProcessing(BaseModel):
    model_config = ConfigDict(extra="allow")

    model_id: str | None = None
    fallback_strategy: Any = None
    max_completion_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2)


class Configuration(BaseModel):
    """Everything that decides the output; PATCH compares these."""

    model_config = ConfigDict(extra="ignore")

    chunk_processing: ChunkProcessing = Field(default_factory=ChunkProcessing)
    expires_in: int | None = Field(None, ge=1, le=10 * 365 * 24 * 3600)
    high_resolution: bool = False
    ocr_strategy: OcrStrategy = "All"
    segmentation_strategy: SegmentationStrategy = "LayoutAnalysis"
    segment_processing: dict[str, SegmentProcessingConfig] = Field(default_factory=dict)
    error_handling: ErrorHandling = "Fail"
    llm_processing: LlmProcessing | None = None


class CreateTask(Configuration):
    file: str = Field(..., min_length=1, description="URL or base64-encoded file")
    file_name: str | None = Field(None, max_length=500)


class UpdateTask(BaseModel):
    model_config = ConfigDict(extra="ignore")

    chunk_processing: ChunkProcessing | None = None
    expires_in: int | None = Field(None, ge=1, le=10 * 365 * 24 * 3600)
    high_resolution: bool | None = None
    ocr_strategy: OcrStrategy | None = None
    segmentation_strategy: SegmentationStrategy | None = None
    segment_processing: dict[str, SegmentProcessingConfig] | None = None
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

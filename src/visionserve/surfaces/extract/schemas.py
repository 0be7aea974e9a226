"""Request and response bodies of the ImgGo contract (plus ``engine`` and ``field_metadata``)."""

from __future__ import annotations

from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from visionserve.surfaces.extract.formats import OutputFormat

PatternStatus = Literal["active", "draft", "archived"]
JobStatus = Literal["queued", "processing", "completed", "failed"]
Engine = Literal["local", "vlm", "auto"]
Priority = Literal["normal", "high"]
Event = Literal["job.completed", "job.failed"]
EVENTS: list[Event] = ["job.completed", "job.failed"]

T = TypeVar("T")


class Envelope(BaseModel, Generic[T]):
    success: bool = True
    data: T


class Message(BaseModel):
    success: bool = True
    message: str


class ErrorBody(BaseModel):
    code: str
    message: str
    details: dict[str, Any] | None = None


class ErrorEnvelope(BaseModel):
    success: Literal[False] = False
    error: ErrorBody


# --- patterns ----------------------------------------------------------------------


class CreatePattern(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    name: str = Field(min_length=1, max_length=200)
    output_format: OutputFormat = "json"
    instructions: str = Field("", max_length=20_000)
    # The contract's compact form ({"total": "number", ...}) or a JSON Schema document.
    schema_: dict[str, Any] = Field(alias="schema")
    webhook_url: str | None = Field(None, max_length=2000)
    metadata: dict[str, Any] | None = None
    status: PatternStatus = "active"
    engine: Engine | None = None  # an addition: local, vlm or auto (VLM when configured)


class UpdatePattern(BaseModel):
    """Only the fields sent change; ``webhook_url: null`` removes the pattern's webhook."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    name: str | None = Field(None, min_length=1, max_length=200)
    output_format: OutputFormat | None = None
    instructions: str | None = Field(None, max_length=20_000)
    schema_: dict[str, Any] | None = Field(None, alias="schema")
    webhook_url: str | None = Field(None, max_length=2000)
    metadata: dict[str, Any] | None = None
    status: PatternStatus | None = None
    engine: Engine | None = None


class PatternSummary(BaseModel):
    pattern_id: str
    name: str
    output_format: OutputFormat
    status: PatternStatus
    created_at: str
    updated_at: str
    request_count: int


class Pagination(BaseModel):
    current_page: int
    total_pages: int
    total_count: int


class PatternList(BaseModel):
    patterns: list[PatternSummary]
    pagination: Pagination


class PatternCreated(BaseModel):
    pattern_id: str
    name: str
    output_format: OutputFormat
    status: PatternStatus
    endpoint: str
    created_at: str


class Statistics(BaseModel):
    total_requests: int
    success_rate: float  # percent of finished jobs that completed
    avg_processing_time_ms: int
    usage_units: int  # an addition: pages, counted twice at high priority


class PatternDetail(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    pattern_id: str
    name: str
    output_format: OutputFormat
    instructions: str
    schema_: Any = Field(alias="schema")
    status: PatternStatus
    engine: Engine
    webhook_url: str | None
    metadata: dict[str, Any] | None
    endpoint: str
    created_at: str
    updated_at: str
    statistics: Statistics


class PatternUpdated(BaseModel):
    pattern_id: str
    updated_at: str


# --- ingest and jobs ---------------------------------------------------------------


class IngestRequest(BaseModel):
    """One of ``image_url`` or ``image_base64`` (or a multipart ``file``)."""

    model_config = ConfigDict(extra="forbid")

    image_url: str | None = Field(None, max_length=4000)
    image_base64: str | None = None
    metadata: dict[str, Any] | None = None
    priority: Priority = "normal"


class JobError(BaseModel):
    code: str
    message: str


class JobView(BaseModel):
    """A job as ``GET /jobs/{id}`` shows it; only the fields of its status are set."""

    job_id: str
    pattern_id: str | None = None
    status: JobStatus
    message: str | None = None
    approach: Literal["sync", "queued"] | None = None
    estimated_completion_time: str | None = None
    progress: int | None = None
    result: dict[str, Any] | str | None = None
    field_metadata: dict[str, Any] | None = None
    confidence: float | None = None
    processing_time_ms: int | None = None
    engine: str | None = None
    error: JobError | None = None
    metadata: dict[str, Any] | None = None
    priority: Priority | None = None
    page_count: int | None = None
    created_at: str | None = None
    started_at: str | None = None
    completed_at: str | None = None
    failed_at: str | None = None


class JobList(BaseModel):
    jobs: list[JobView]
    pagination: Pagination


# --- webhooks ----------------------------------------------------------------------


class CreateWebhook(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str = Field(min_length=1, max_length=2000)
    events: list[Event] = Field(default_factory=lambda: list(EVENTS), min_length=1)
    # Generated when not given; every delivery is signed with it.
    secret: str | None = Field(None, min_length=8, max_length=200)


class WebhookView(BaseModel):
    webhook_id: str
    url: str
    events: list[Event]
    secret: str | None = None
    active: bool
    created_at: str | None = None


class WebhookList(BaseModel):
    webhooks: list[WebhookView]

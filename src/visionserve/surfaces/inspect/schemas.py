"""inspect request/response models (contract: geti-inspect-api.md)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

Label = Literal["normal", "anomalous"]
SourceType = Literal["webcam", "ip_camera", "video_file"]
SinkType = Literal["webhook", "mqtt", "filesystem"]

Name = Annotated[str, Field(min_length=1, max_length=200)]


class _Strict(BaseModel):
    # Unknown fields in a request are the client's typo, not something to drop silently.
    model_config = ConfigDict(extra="forbid")


# --- projects --------------------------------------------------------------------------


class ProjectCreate(_Strict):
    name: Name


class ProjectUpdate(_Strict):
    name: Name | None = None


class Project(BaseModel):
    id: str
    name: str
    created_at: datetime
    updated_at: datetime


# --- media -----------------------------------------------------------------------------


class Media(BaseModel):
    id: str
    project_id: str
    filename: str
    label: Label
    width: int = Field(ge=1)
    height: int = Field(ge=1)
    content_type: str
    thumbnail_url: str = Field(
        description="Relative to the API base, e.g. /media/thumbnails/<id>.png"
    )
    has_mask: bool = Field(False, description="A defect mask was uploaded (PUT /media/{id}/mask)")
    created_at: datetime


class MediaPage(BaseModel):
    items: list[Media]
    total: int = Field(ge=0)
    limit: int = Field(ge=1)
    offset: int = Field(ge=0)


class UploadError(BaseModel):
    """Why one file of an upload was refused; the other files are unaffected."""

    filename: str
    detail: str


class UploadResult(BaseModel):
    uploaded: int = Field(ge=0)
    failed: int = Field(ge=0)
    items: list[Media]
    errors: list[UploadError] = Field(default_factory=list)


# --- snapshots -------------------------------------------------------------------------


class SnapshotCreate(_Strict):
    name: Name


class Snapshot(BaseModel):
    id: str
    project_id: str
    name: str
    media_count: int = Field(ge=0)
    created_at: datetime


# --- sources ---------------------------------------------------------------------------


class WebcamConfig(_Strict):
    device_index: int = Field(0, ge=0, le=255)


def _parsable_url(url: str) -> str:
    """A URL whose host and port parse (``rtsp://]x`` or ``http://h:99999`` do not)."""
    try:
        parts = urlsplit(url)
        _ = parts.port
    except ValueError as exc:
        raise ValueError(f"not a valid URL: {exc}") from None
    if not parts.hostname:
        raise ValueError("the URL has no host")
    return url


Url = Annotated[str, AfterValidator(_parsable_url)]


class IpCameraConfig(_Strict):
    url: Url = Field(min_length=1, max_length=2000, pattern=r"^(rtsp|rtsps|rtmp|http|https)://\S+$")


class VideoFileConfig(_Strict):
    path: str = Field(min_length=1, max_length=4096)
    loop: bool = False


class WebcamSource(_Strict):
    type: Literal["webcam"]
    name: Name
    config: WebcamConfig = Field(default_factory=WebcamConfig)


class IpCameraSource(_Strict):
    type: Literal["ip_camera"]
    name: Name
    config: IpCameraConfig


class VideoFileSource(_Strict):
    type: Literal["video_file"]
    name: Name
    config: VideoFileConfig


SourceCreate = Annotated[
    WebcamSource | IpCameraSource | VideoFileSource, Field(discriminator="type")
]
SourceConfig = WebcamConfig | IpCameraConfig | VideoFileConfig
SOURCE_CONFIGS: dict[str, type[SourceConfig]] = {
    "webcam": WebcamConfig,
    "ip_camera": IpCameraConfig,
    "video_file": VideoFileConfig,
}

#: What a response shows in place of a secret; sent back in a PATCH, it keeps the secret.
MASK = "********"


class SourceUpdate(_Strict):
    """``PATCH /sources/{id}`` (an addition to the contract).

    ``config`` replaces the whole config, validated for ``type`` (default: the current
    one); a masked password sent back as it was shown keeps the stored one.
    """

    name: Name | None = None
    type: SourceType | None = None
    config: dict[str, Any] | None = None


class Source(BaseModel):
    id: str
    project_id: str
    type: SourceType
    name: str
    config: dict[str, object]
    created_at: datetime


# --- sinks -----------------------------------------------------------------------------


class WebhookConfig(_Strict):
    url: Url = Field(min_length=1, max_length=2000, pattern=r"^https?://\S+$")
    # Deliveries are signed POSTs from the webhook outbox, like every VisionServe webhook.
    method: Literal["POST"] = "POST"
    headers: dict[str, str] = Field(default_factory=dict)
    secret: str | None = Field(
        None,
        min_length=16,
        max_length=200,
        description="HMAC key of the X-VisionServe-Signature header; generated when omitted",
    )


class MqttConfig(_Strict):
    broker: Url = Field(min_length=1, max_length=2000, pattern=r"^(mqtt|mqtts|tcp|ssl)://\S+$")
    topic: str = Field(min_length=1, max_length=500)
    username: str | None = Field(None, max_length=200)
    password: str | None = Field(None, max_length=200)


class FilesystemConfig(_Strict):
    output_dir: str = Field(min_length=1, max_length=4096)
    save_images: bool = True


class WebhookSink(_Strict):
    type: Literal["webhook"]
    name: Name
    config: WebhookConfig


class MqttSink(_Strict):
    type: Literal["mqtt"]
    name: Name
    config: MqttConfig


class FilesystemSink(_Strict):
    type: Literal["filesystem"]
    name: Name
    config: FilesystemConfig


SinkCreate = Annotated[WebhookSink | MqttSink | FilesystemSink, Field(discriminator="type")]
SinkConfig = WebhookConfig | MqttConfig | FilesystemConfig
SINK_CONFIGS: dict[str, type[SinkConfig]] = {
    "webhook": WebhookConfig,
    "mqtt": MqttConfig,
    "filesystem": FilesystemConfig,
}


class SinkUpdate(_Strict):
    """``PATCH /sinks/{id}`` (an addition to the contract).

    ``config`` replaces the whole config, validated for ``type`` (default: the current
    one). Secrets are write-only: a value sent back as the mask (``********``) keeps
    the stored one, as long as the destination (URL, broker) is unchanged; a webhook
    config without ``secret`` keeps its signing secret.
    """

    name: Name | None = None
    type: SinkType | None = None
    config: dict[str, Any] | None = None


class Sink(BaseModel):
    id: str
    project_id: str
    type: SinkType
    name: str
    config: dict[str, object]
    created_at: datetime


# --- training, models and jobs ---------------------------------------------------------

ModelStatus = Literal["training", "ready", "failed"]
ExportFormat = Literal["openvino", "onnx", "pytorch"]
JobType = Literal["training", "export"]
JobStatus = Literal["pending", "running", "completed", "failed", "cancelled"]


class TrainableModel(BaseModel):
    name: str
    display_name: str
    description: str
    parameters: dict[str, dict[str, Any]] = Field(
        description="Each parameter's type, default, options and range"
    )
    available: bool = Field(True, description="False when a weights file it needs is missing")
    unavailable_reason: str | None = None


class TrainRequest(_Strict):
    model_name: Name
    architecture: str = Field(min_length=1, max_length=64)
    parameters: dict[str, Any] = Field(default_factory=dict)
    snapshot_id: str | None = Field(None, description="Train on a snapshot; default: all media")


class TrainAccepted(BaseModel):
    job_id: str
    model_id: str
    status: JobStatus


class Model(BaseModel):
    id: str
    project_id: str
    name: str
    format: Literal["openvino"] = "openvino"
    architecture: str
    parameters: dict[str, Any]
    status: ModelStatus
    metrics: dict[str, Any]
    error: str | None = None
    job_id: str | None = None
    snapshot_id: str | None = None
    created_at: datetime


class Job(BaseModel):
    id: str
    project_id: str
    type: JobType
    status: JobStatus
    progress: float = Field(ge=0, le=1)
    message: str | None = None
    metrics: dict[str, Any] = Field(default_factory=dict)
    result: dict[str, Any] | None = None
    error: str | None = None
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None


class Prediction(BaseModel):
    """``POST /models/{id}/predict`` (an addition to the contract)."""

    model_id: str
    score: float
    label: Literal["normal", "anomalous"]
    anomaly_map: str = Field(description="Base64 PNG heat map at the image's size")
    width: int
    height: int
    inference_ms: float


# --- pipelines -------------------------------------------------------------------------


class PipelineConfig(_Strict):
    threshold: float | None = Field(
        None, ge=0, le=1, description="Score from which a frame is anomalous; default: the model's"
    )
    fps: float | None = Field(None, gt=0, le=120, description="Frames per second; default: source")
    emit: Literal["anomalies", "all"] = Field(
        "anomalies", description="Which frames go to the sink"
    )


class PipelineCreate(_Strict):
    name: Name
    model_id: str
    source_id: str
    sink_id: str | None = None
    config: PipelineConfig = Field(default_factory=PipelineConfig)


class PipelineUpdate(_Strict):
    name: Name | None = None
    model_id: str | None = None
    source_id: str | None = None
    sink_id: str | None = None
    config: PipelineConfig | None = None


class Pipeline(BaseModel):
    id: str
    project_id: str
    name: str
    model_id: str | None
    source_id: str | None
    sink_id: str | None
    config: dict[str, Any]
    created_at: datetime
    updated_at: datetime


ActiveStatus = Literal["starting", "running", "stopped", "error"]


class ActivePipelineStart(_Strict):
    pipeline_id: str


class PipelineMetrics(BaseModel):
    frames_processed: int = 0
    anomalies_detected: int = 0
    avg_inference_time_ms: float = 0.0
    fps: float = 0.0
    sink_errors: int = Field(
        0, description="Failed sink deliveries (each failed webhook attempt included)"
    )
    last_sink_error: str | None = Field(None, description="Why the latest sink delivery failed")
    events_dropped: int = Field(0, description="Events a slow sink could not take in time")
    inference_errors: int = 0


class ActivePipeline(BaseModel):
    id: str
    pipeline_id: str
    status: ActiveStatus
    error: str | None = None
    started_at: datetime
    stopped_at: datetime | None = None
    metrics: PipelineMetrics = Field(default_factory=PipelineMetrics)


class Capture(BaseModel):
    id: str
    active_pipeline_id: str
    timestamp: datetime
    anomaly_score: float | None
    image_url: str


# --- devices and WebRTC ----------------------------------------------------------------


class Camera(BaseModel):
    index: int
    name: str
    type: Literal["webcam"] = "webcam"


class ComputeDevice(BaseModel):
    name: str
    type: Literal["cpu", "gpu", "npu", "other"]
    runtime: str = Field(description="Who sees it: all, openvino, onnxruntime or ray")


class Devices(BaseModel):
    cameras: list[Camera]
    compute: list[ComputeDevice]


class WebRtcOffer(_Strict):
    pipeline_id: str = Field(description="The active pipeline id")
    sdp: str = Field(min_length=1, max_length=100_000)
    type: Literal["offer"] = "offer"


class WebRtcAnswer(BaseModel):
    sdp: str
    type: Literal["answer"] = "answer"


class WebRtcCandidate(_Strict):
    pipeline_id: str
    candidate: str = Field(max_length=2000)
    sdpMid: str | None = None
    sdpMLineIndex: int | None = None

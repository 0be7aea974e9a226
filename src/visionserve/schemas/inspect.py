"""inspect request/response models for projects, media, snapshots, sources and sinks.

Contract: geti-inspect-api.md. Training, models, pipelines and devices come later.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

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


class IpCameraConfig(_Strict):
    url: str = Field(min_length=1, max_length=2000, pattern=r"^(rtsp|rtsps|rtmp|http|https)://\S+$")


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


class Source(BaseModel):
    id: str
    project_id: str
    type: SourceType
    name: str
    config: dict[str, object]
    created_at: datetime


# --- sinks -----------------------------------------------------------------------------


class WebhookConfig(_Strict):
    url: str = Field(min_length=1, max_length=2000, pattern=r"^https?://\S+$")
    method: Literal["POST", "PUT", "PATCH"] = "POST"
    headers: dict[str, str] = Field(default_factory=dict)


class MqttConfig(_Strict):
    broker: str = Field(min_length=1, max_length=2000, pattern=r"^(mqtt|mqtts|tcp|ssl)://\S+$")
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


class Sink(BaseModel):
    id: str
    project_id: str
    type: SinkType
    name: str
    config: dict[str, object]
    created_at: datetime

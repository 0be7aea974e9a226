"""Process settings: nested pydantic-settings, env prefix ``VISIONSERVE_``, ``__`` delimiter.

Deployment topology (replicas, resources) lives in serve_config.yaml, not here.
Every default works on one machine with no server at all (SQLite, local blobs,
in-process limits).
"""

from __future__ import annotations

import os
import secrets
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

MB = 1024 * 1024


class S3Settings(BaseModel):
    """S3-compatible object storage (AWS, MinIO, IBM COS with HMAC keys)."""

    endpoint_url: str | None = None
    bucket: str = "visionserve"
    region: str = "us-east-1"
    access_key_id: str | None = None
    secret_access_key: str | None = None
    addressing_style: Literal["path", "virtual", "auto"] = "path"
    create_bucket: bool = False
    prefix: str = ""


class BlobSettings(BaseModel):
    backend: Literal["local", "s3"] = "local"
    local_dir: Path | None = None  # default: <home>/blobs
    s3: S3Settings = S3Settings()
    url_expiry_s: int = Field(3600, gt=0, le=7 * 24 * 3600)


class AuthSettings(BaseModel):
    # "contract": each surface requires a key exactly when its API contract does;
    # "all": every surface requires one (production); "off": none (local demos).
    mode: Literal["contract", "all", "off"] = "contract"


class LimitSettings(BaseModel):
    max_request_bytes: int = Field(50 * MB, gt=0)
    max_image_pixels: int = Field(64_000_000, gt=0)
    # Largest image an operation may produce (an upscale's width * height * scale**2, each
    # cut-out of /cutout/process), checked before any work: over it is a 413. Sized to a
    # 2-core, 24 GiB machine: a 32 MP x4 upscale (1414x1414 -> 5656x5656) measured +0.18 GB
    # with Lanczos and +0.56 GB with waifu2x-upconv7 (alpha, PNG included); cunet, about
    # +0.75 GB, takes about 4 minutes on one core there.
    max_output_pixels: int = Field(32_000_000, gt=0)
    max_download_bytes: int = Field(50 * MB, gt=0)
    # Requests per minute per key (or client address) on a surface without its own limit.
    rate_limit_per_minute: int = Field(60, gt=0)
    # Per-surface limits by surface name ({"cutout": 600}); a surface not named here keeps
    # its contract's limit (cutout 60, documents 1200, extract 1000, inspect 1200).
    rate_limits: dict[str, Annotated[int, Field(gt=0)]] = Field(default_factory=dict)


class EgressSettings(BaseModel):
    """Outbound URLs (image_url, callbacks, webhooks) are checked against this policy."""

    # CIDRs or host names that may be reached even though they are private/loopback
    # (inspect cameras, MQTT brokers and webhook sinks too).
    allow: list[str] = []
    timeout_s: float = Field(20.0, gt=0)
    max_redirects: int = Field(3, ge=0)


class JobSettings(BaseModel):
    lease_s: float = Field(30.0, gt=0)
    heartbeat_s: float = Field(5.0, gt=0)
    # How often an idle worker looks for a job: what a new job waits, half of it on average
    # (a look costs 0.3 ms on SQLite).
    poll_s: float = Field(0.1, gt=0)
    max_attempts: int = Field(3, ge=1)
    # A job whose replica or node died is queued again after this, doubling per attempt.
    retry_backoff_s: float = Field(2.0, ge=0)
    concurrency: int = Field(2, ge=1)

    @model_validator(mode="after")
    def _heartbeat_within_lease(self) -> JobSettings:
        if self.heartbeat_s >= self.lease_s:
            raise ValueError("jobs.heartbeat_s must be shorter than jobs.lease_s")
        return self


class WebhookSettings(BaseModel):
    max_attempts: int = Field(8, ge=1)
    backoff_base_s: float = Field(2.0, gt=0)
    backoff_max_s: float = Field(600.0, gt=0)
    timeout_s: float = Field(10.0, gt=0)
    default_secret: str | None = None


class ProviderSettings(BaseModel):
    """Remote background-removal APIs; each provider is enabled by setting its API key."""

    # Plain strings like the other secrets here: graphs/app.py hands settings to the
    # deployments as JSON, where a SecretStr would arrive masked.
    runware_api_key: str | None = None
    runware_base_url: str = "https://api.runware.ai/v1"
    # AIR ids from runware.ai/docs: Bria RMBG v2.0 and BiRefNet Portrait.
    runware_rmbg2_model: str = "bria:2@1"
    runware_birefnet_portrait_model: str = "runware:112@10"
    kie_api_key: str | None = None
    kie_base_url: str = "https://api.kie.ai"
    # Kie.ai's File Upload API, which turns our image into a URL its models can fetch.
    kie_upload_base_url: str = "https://kieai.redpandaai.co"
    kie_poll_interval_s: float = Field(1.0, gt=0)
    # recordInfo reports no cost, so each Kie.ai task is billed at this flat price.
    kie_cost_usd: float = Field(0.005, ge=0)
    timeout_s: float = Field(30.0, gt=0)


class DocumentSettings(BaseModel):
    # "auto": tesseract when its binary and English data are installed, else rapidocr
    # (resolved once per process by models.documents.ocr.resolve_ocr_engine).
    ocr_engine: Literal["auto", "tesseract", "rapidocr"] = "auto"
    max_pages: int = Field(1000, ge=1)
    # Pages per key per calendar month; None: no limit.
    monthly_page_limit: int | None = Field(None, ge=0)
    # A page's stages answer within this, or its calls are dropped and the page sent again
    # (graphs.documents.PAGE_TRIES times in all): a lost node can leave calls unanswered.
    page_timeout_s: float = Field(120.0, gt=0)


class InspectSettings(BaseModel):
    """Anomaly training and live pipelines."""

    # Ray resources of a training task. The CPU reservation is small so training fits
    # beside the replicas of a one-machine cluster; raise it on a real cluster.
    train_num_cpus: float = Field(0.1, gt=0)
    train_num_gpus: float = Field(0.0, ge=0)
    # Torch threads while training; None: every core of the node.
    train_threads: int | None = Field(None, ge=1)
    # Share of the normal images held out for validation.
    holdout: float = Field(0.2, gt=0, lt=1)
    # OpenVINO device of the inference deployment ("CPU", "GPU", "AUTO").
    device: str = "CPU"
    # Live pipelines: the longest a source may take to open or deliver a frame.
    source_timeout_s: float = Field(10.0, gt=0)
    # Folders video_file sources may read, besides <home>/inspect/videos (where relative
    # paths resolve). Relative entries are relative to the home.
    video_roots: list[Path] = Field(default_factory=list)
    # Folders filesystem sinks may write, besides <home>/inspect/output (where relative
    # paths resolve). Relative entries are relative to the home.
    output_roots: list[Path] = Field(default_factory=list)
    # ip_camera URLs and MQTT brokers may be on private LANs (10/8, 172.16/12,
    # 192.168/16, fc00::/7), where cameras and brokers live. Loopback, link-local and
    # cloud metadata addresses are refused either way unless egress.allow lists them.
    # Webhook sinks follow the egress policy alone: the outbox that sends them does.
    allow_private_networks: bool = True


class LlmSettings(BaseModel):
    """An OpenAI-compatible chat endpoint for llm_processing (optional)."""

    base_url: str | None = None  # e.g. http://127.0.0.1:11434/v1
    api_key: str | None = None
    model: str = "gpt-4o-mini"
    timeout_s: float = Field(60.0, gt=0)


class ExtractSettings(BaseModel):
    """The extract surface: sync answers, page limits and the optional VLM engine."""

    # Ingest answers 200 with the result when the job finishes within this many seconds,
    # else 202 queued (the job goes on either way).
    sync_window_s: float = Field(5.0, ge=0, le=60)
    max_pages: int = Field(20, ge=1, le=1000)
    # The engine a pattern gets when it does not ask for one; auto = VLM when configured.
    default_engine: Literal["local", "vlm", "auto"] = "auto"
    # An OpenAI-compatible vision model (vLLM, Ollama, llama.cpp); none by default.
    vlm: LlmSettings = LlmSettings(model="", timeout_s=120.0)


class GenerativeSettings(BaseModel):
    """An OpenAI-compatible image edit API (``POST {base_url}/images/edits``), optional."""

    base_url: str | None = None  # e.g. https://api.openai.com/v1
    api_key: str | None = None
    model: str = "gpt-image-1"
    timeout_s: float = Field(120.0, gt=0)


class EditSettings(BaseModel):
    """The edit surface: its COS buckets (the blob store's), engine options, batch pool."""

    # Buckets of edit's own S3-compatible store (IBM COS, MinIO, AWS) when ``s3`` is set
    # (its ``bucket`` and ``prefix`` are unused), else of the platform's blob store: with
    # blobs.backend "s3" its endpoint, with local blobs <blobs.local_dir>/cos/<bucket>/.
    s3: S3Settings | None = None
    input_bucket: str = "input-images"
    output_bucket: str = "wxo-images"
    input_prefix: str = ""
    output_prefix: str = "results/batch"
    presign_expires: int = Field(900, gt=0, le=7 * 24 * 3600)
    # The rembg model and upscale method edits use (their deployments serve cutout too);
    # an upscale method that is not available falls back to lanczos.
    bg_model: str = "u2netp"
    upscale_method: str = "waifu2x-upconv7"
    # Optional: a chat model that plans edits with one strict tool (rules when unset).
    planner_llm: LlmSettings = LlmSettings(timeout_s=20.0)
    # Optional: what no local operation can do ("add a dog") goes here.
    generative: GenerativeSettings = GenerativeSettings()
    # COS -> COS batches (Ray Data): actors in the pool, images per batch, the CPUs each
    # actor reserves, most files. The reservation is small so a batch fits beside the
    # Serve replicas of a one-machine cluster (they hold ~1.9 of 2 CPUs); each actor
    # still uses a core of its own. Raise it on a real cluster.
    batch_actors: int = Field(2, ge=1)
    batch_size: int = Field(2, ge=1)
    batch_actor_cpus: float = Field(0.05, gt=0)
    max_batch_files: int = Field(10_000, ge=1)


class Settings(BaseSettings):
    """All process settings. Read once per process through :func:`get_settings`."""

    model_config = SettingsConfigDict(
        env_prefix="VISIONSERVE_", env_nested_delimiter="__", extra="ignore"
    )

    home: Path = Path("var")
    database_url: str = ""  # empty: sqlite:///<home>/visionserve.db
    redis_url: str | None = None
    model_home: Path | None = None  # default: <home>/models
    public_url: str = "http://127.0.0.1:8000"
    secret_key: str | None = None  # default: generated once into <home>/secret_key
    blobs: BlobSettings = BlobSettings()
    auth: AuthSettings = AuthSettings()
    limits: LimitSettings = LimitSettings()
    egress: EgressSettings = EgressSettings()
    jobs: JobSettings = JobSettings()
    webhooks: WebhookSettings = WebhookSettings()
    documents: DocumentSettings = DocumentSettings()
    inspect: InspectSettings = InspectSettings()
    llm: LlmSettings = LlmSettings()
    extract: ExtractSettings = ExtractSettings()
    providers: ProviderSettings = ProviderSettings()
    edit: EditSettings = EditSettings()

    @model_validator(mode="after")
    def _resolve_paths(self) -> Settings:
        # Absolute paths, so that every Ray worker (whatever its cwd) sees the same files.
        self.home = self.home.expanduser().resolve()
        if not self.database_url:
            self.database_url = f"sqlite:///{self.home / 'visionserve.db'}"
        if self.model_home is None:
            self.model_home = self.home / "models"
        self.model_home = self.model_home.expanduser().resolve()
        if self.blobs.local_dir is None:
            self.blobs.local_dir = self.home / "blobs"
        self.blobs.local_dir = self.blobs.local_dir.expanduser().resolve()
        if self.blobs.backend == "s3" and not self.blobs.s3.bucket:
            raise ValueError("blobs.s3.bucket is required when blobs.backend is 's3'")
        return self

    @property
    def model_dir(self) -> Path:
        """``model_home`` as resolved by the validator (never None after it)."""
        assert self.model_home is not None
        return self.model_home

    @property
    def signing_key(self) -> bytes:
        """Key for signed blob URLs; generated once per home so all replicas share it."""
        if self.secret_key:
            return self.secret_key.encode()
        path = self.home / "secret_key"
        if not path.exists():
            self.home.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{secrets.token_hex(4)}")
            tmp.write_text(secrets.token_hex(32))
            tmp.chmod(0o600)
            try:
                os.link(tmp, path)  # atomic: the first writer wins
            except FileExistsError:
                pass
            finally:
                tmp.unlink()
        return path.read_text().strip().encode()


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings, read from the environment once."""
    return Settings()


def settings_from(overrides: dict[str, Any] | None) -> Settings:
    """Settings from the environment with explicit overrides deep-merged on top.

    Derived defaults (database URL, model home, blob dir) follow an overridden
    ``home``, as they would had it come from the environment.
    """
    if not overrides:
        return get_settings()
    return Settings(**overrides)

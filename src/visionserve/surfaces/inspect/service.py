"""inspect service: projects, labelled media, snapshots, sources and sinks.

Records live in the database; media pixels and their thumbnails in the blob store
under ``inspect/projects/<project_id>/``, so deleting a project drops its blobs with
one prefix delete. Uploads validate every file on its own: a non-image or a
truncated image is reported in ``errors`` and the rest of the batch still lands.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from PIL import Image
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from visionserve.errors import (
    Conflict,
    NotFound,
    Unprocessable,
    VisionServeError,
)
from visionserve.platform.images import (
    DEFAULT_FORMATS,
    MIME_TYPES,
    encode_image,
    load_image,
    sniff_format,
)
from visionserve.settings import Settings
from visionserve.store.blobs import BlobStore
from visionserve.store.db import session_scope
from visionserve.store.records import new_id, utcnow
from visionserve.surfaces.inspect import schemas as i
from visionserve.surfaces.inspect.confinement import IoPolicy
from visionserve.surfaces.inspect.live.config import parse_config
from visionserve.surfaces.inspect.masking import mask_config, restore_secrets
from visionserve.surfaces.inspect.records import (
    InspectMedia,
    InspectProject,
    InspectSink,
    InspectSnapshot,
    InspectSource,
)

log = logging.getLogger(__name__)

#: Longest side of a generated thumbnail, in pixels.
THUMBNAIL_SIZE = 256
#: Formats accepted for media (anomaly datasets are mostly PNG, JPEG and BMP).
MEDIA_FORMATS = DEFAULT_FORMATS | {"BMP"}
# Modes PNG can store as they are; anything else (CMYK, YCbCr, ...) becomes RGB.
_PNG_MODES = {"1", "L", "LA", "P", "RGB", "RGBA", "I", "I;16"}


def project_prefix(project_id: str) -> str:
    return f"inspect/projects/{project_id}/"


def thumbnail_url(media_id: str) -> str:
    """Where the thumbnail is served, relative to the API base (as in the contract)."""
    return f"/media/thumbnails/{media_id}.png"


def make_thumbnail(img: Image.Image, size: int = THUMBNAIL_SIZE) -> bytes:
    """A PNG no larger than ``size`` on its longest side, aspect ratio kept."""
    thumb = img.copy() if img.mode in _PNG_MODES else img.convert("RGB")
    thumb.thumbnail((size, size), Image.Resampling.LANCZOS)
    return encode_image(thumb, "png")


def open_upload(settings: Settings, data: bytes, what: str) -> Image.Image:
    """An uploaded image (media, mask, image to score) in one of the media formats."""
    return load_image(data, settings, allowed=MEDIA_FORMATS, what=what)


def require_project(s: Session, project_id: str) -> InspectProject:
    """The project, or the contract's 404."""
    project = s.get(InspectProject, project_id)
    if project is None:
        raise NotFound(f"Project {project_id} not found")
    return project


def project_rows(s: Session, record: Any, project_id: str) -> list[Any]:
    """A project's rows of ``record`` (snapshots, sources, models, ...), oldest first."""
    require_project(s, project_id)
    query = select(record).where(record.project_id == project_id).order_by(record.created_at)
    return list(s.scalars(query).all())


def refuse_taken_name(
    s: Session, record: Any, project_id: str, name: str, what: str, exclude: str | None = None
) -> None:
    """409 when another ``record`` of the project already has ``name``."""
    taken = s.scalar(select(record.id).where(record.project_id == project_id, record.name == name))
    if taken is not None and taken != exclude:
        raise Conflict(f"A {what} named {name!r} already exists in this project")


@dataclass(frozen=True)
class _Prepared:
    media_id: str
    filename: str
    content_type: str
    width: int
    height: int
    image_key: str
    thumbnail_key: str
    data: bytes
    thumbnail: bytes


@dataclass
class InspectService:
    settings: Settings
    blobs: BlobStore

    @contextlib.contextmanager
    def _session(self, conflict: str) -> Iterator[Session]:
        """A transaction whose unique-constraint races become the contract's 409."""
        try:
            with session_scope(self.settings.database_url) as s:
                yield s
        except IntegrityError as exc:
            raise Conflict(conflict) from exc

    # --- projects --------------------------------------------------------------------

    def _name_taken(self, s: Session, name: str, exclude: str | None = None) -> None:
        existing = s.scalar(select(InspectProject.id).where(InspectProject.name == name))
        if existing is not None and existing != exclude:
            raise Conflict(f"A project named {name!r} already exists")

    def list_projects(self) -> list[i.Project]:
        with session_scope(self.settings.database_url) as s:
            rows = s.scalars(select(InspectProject).order_by(InspectProject.created_at)).all()
            return [_project_out(p) for p in rows]

    def create_project(self, body: i.ProjectCreate) -> i.Project:
        with self._session(f"A project named {body.name!r} already exists") as s:
            self._name_taken(s, body.name)
            now = utcnow()
            project = InspectProject(id=new_id(), name=body.name, created_at=now, updated_at=now)
            s.add(project)
            s.flush()
            return _project_out(project)

    def get_project(self, project_id: str) -> i.Project:
        with session_scope(self.settings.database_url) as s:
            return _project_out(require_project(s, project_id))

    def update_project(self, project_id: str, body: i.ProjectUpdate) -> i.Project:
        with self._session(f"A project named {body.name!r} already exists") as s:
            project = require_project(s, project_id)
            if body.name is not None and body.name != project.name:
                self._name_taken(s, body.name, exclude=project_id)
                project.name = body.name
                project.updated_at = utcnow()
            s.flush()
            return _project_out(project)

    def delete_project(self, project_id: str) -> None:
        """Delete the project, its media, snapshots, sources and sinks (FK cascade)."""
        with session_scope(self.settings.database_url) as s:
            s.delete(require_project(s, project_id))
        self.blobs.delete_prefix(project_prefix(project_id))

    # --- media -----------------------------------------------------------------------

    def list_media(
        self, project_id: str, *, label: i.Label | None, limit: int, offset: int
    ) -> i.MediaPage:
        with session_scope(self.settings.database_url) as s:
            require_project(s, project_id)
            where = [InspectMedia.project_id == project_id]
            if label is not None:
                where.append(InspectMedia.label == label)
            total = s.scalar(select(func.count()).select_from(InspectMedia).where(*where)) or 0
            rows = s.scalars(
                select(InspectMedia)
                .where(*where)
                .order_by(InspectMedia.created_at, InspectMedia.id)
                .limit(limit)
                .offset(offset)
            ).all()
            return i.MediaPage(
                items=[_media_out(m) for m in rows], total=total, limit=limit, offset=offset
            )

    async def upload(
        self, project_id: str, files: Sequence[tuple[str, bytes]], label: i.Label
    ) -> i.UploadResult:
        """Store every valid image of ``files`` with ``label``; report the others.

        Args:
            project_id: The project.
            files: ``(filename, bytes)`` pairs, in upload order.
            label: The label for all of them.

        Raises:
            NotFound: No such project.
        """
        await asyncio.to_thread(self.get_project, project_id)
        prepared: list[_Prepared] = []
        errors: list[i.UploadError] = []
        for filename, data in files:
            try:
                prepared.append(await asyncio.to_thread(self._prepare, project_id, filename, data))
            except VisionServeError as exc:
                errors.append(i.UploadError(filename=filename, detail=exc.message))
        try:
            for p in prepared:
                await asyncio.to_thread(self.blobs.put, p.image_key, p.data, p.content_type)
                await asyncio.to_thread(self.blobs.put, p.thumbnail_key, p.thumbnail, "image/png")
            items = await asyncio.to_thread(self._commit_media, project_id, prepared, label)
        except BaseException:
            for p in prepared:
                await asyncio.to_thread(self._delete_blobs, p.image_key, p.thumbnail_key)
            raise
        return i.UploadResult(uploaded=len(items), failed=len(errors), items=items, errors=errors)

    def _prepare(self, project_id: str, filename: str, data: bytes) -> _Prepared:
        img = open_upload(self.settings, data, "File")
        fmt = sniff_format(data) or "png"
        media_id = new_id()
        base = f"{project_prefix(project_id)}media/{media_id}"
        return _Prepared(
            media_id=media_id,
            filename=filename,
            content_type=MIME_TYPES[fmt],
            width=img.width,
            height=img.height,
            image_key=f"{base}/image.{fmt}",
            thumbnail_key=f"{base}/thumbnail.png",
            data=data,
            thumbnail=make_thumbnail(img),
        )

    def _commit_media(
        self, project_id: str, prepared: Sequence[_Prepared], label: i.Label
    ) -> list[i.Media]:
        with session_scope(self.settings.database_url) as s:
            # Locked, so a concurrent project delete cannot strand these rows' blobs.
            if s.get(InspectProject, project_id, with_for_update=True) is None:
                raise NotFound(f"Project {project_id} not found")
            rows = [
                InspectMedia(
                    id=p.media_id,
                    project_id=project_id,
                    filename=p.filename,
                    label=label,
                    content_type=p.content_type,
                    width=p.width,
                    height=p.height,
                    image_key=p.image_key,
                    thumbnail_key=p.thumbnail_key,
                    created_at=utcnow(),
                )
                for p in prepared
            ]
            s.add_all(rows)
            s.flush()
            return [_media_out(m) for m in rows]

    def _media(self, s: Session, media_id: str) -> InspectMedia:
        media = s.get(InspectMedia, media_id)
        if media is None:
            raise NotFound(f"Media {media_id} not found")
        return media

    def media_image(self, media_id: str) -> tuple[bytes, str]:
        """The stored image bytes, exactly as uploaded, and their MIME type."""
        with session_scope(self.settings.database_url) as s:
            media = self._media(s, media_id)
            key, content_type = media.image_key, media.content_type
        return self.blobs.get(key), content_type

    def media_thumbnail(self, media_id: str) -> bytes:
        with session_scope(self.settings.database_url) as s:
            key = self._media(s, media_id).thumbnail_key
        return self.blobs.get(key)

    def delete_media(self, media_id: str) -> None:
        with session_scope(self.settings.database_url) as s:
            media = self._media(s, media_id)
            keys = [media.image_key, media.thumbnail_key]
            if media.mask_key:
                keys.append(media.mask_key)
            s.delete(media)
        self._delete_blobs(*keys)

    def set_mask(self, media_id: str, data: bytes) -> i.Media:
        """Store the defect mask of an image (white = defect), binarised to 0/255.

        Raises:
            NotFound: No such media.
            PayloadTooLarge: Over the upload limit.
            Unprocessable: Not the image's size (other bad files: see open_upload).
        """
        with session_scope(self.settings.database_url) as s:
            media = self._media(s, media_id)
            size, key = (media.width, media.height), media.image_key
        mask = open_upload(self.settings, data, "Mask")
        if mask.size != size:
            raise Unprocessable(
                f"The mask is {mask.width}x{mask.height}; the image is {size[0]}x{size[1]}"
            )
        binary = mask.convert("L").point(lambda v: 255 if v > 127 else 0)
        mask_key = key.rsplit("/", 1)[0] + "/mask.png"
        self.blobs.put(mask_key, encode_image(binary, "png"), "image/png")
        with session_scope(self.settings.database_url) as s:
            media = self._media(s, media_id)
            media.mask_key = mask_key
            s.flush()
            return _media_out(media)

    def media_mask(self, media_id: str) -> bytes:
        with session_scope(self.settings.database_url) as s:
            key = self._media(s, media_id).mask_key
        if key is None:
            raise NotFound(f"Media {media_id} has no mask")
        return self.blobs.get(key)

    def _delete_blobs(self, *keys: str) -> None:
        for key in keys:
            try:
                self.blobs.delete(key)
            except Exception:  # the row is gone; a stray blob is only wasted space
                log.warning("could not delete blob %s", key, exc_info=True)

    # --- snapshots -------------------------------------------------------------------

    def list_snapshots(self, project_id: str) -> list[i.Snapshot]:
        with session_scope(self.settings.database_url) as s:
            return [_snapshot_out(r) for r in project_rows(s, InspectSnapshot, project_id)]

    def create_snapshot(self, project_id: str, body: i.SnapshotCreate) -> i.Snapshot:
        """Freeze the project's current media ids under ``body.name``."""
        conflict = f"A snapshot named {body.name!r} already exists in this project"
        with self._session(conflict) as s:
            require_project(s, project_id)
            refuse_taken_name(s, InspectSnapshot, project_id, body.name, "snapshot")
            media_ids = s.scalars(
                select(InspectMedia.id)
                .where(InspectMedia.project_id == project_id)
                .order_by(InspectMedia.created_at, InspectMedia.id)
            ).all()
            snapshot = InspectSnapshot(
                id=new_id(),
                project_id=project_id,
                name=body.name,
                media_ids=list(media_ids),
                created_at=utcnow(),
            )
            s.add(snapshot)
            s.flush()
            return _snapshot_out(snapshot)

    # --- sources and sinks -----------------------------------------------------------

    def policy(self) -> IoPolicy:
        """Where sources may read and sinks may write or connect (see confinement)."""
        return IoPolicy.from_settings(self.settings)

    def _list_io(self, model: Any, project_id: str) -> list[Any]:
        with session_scope(self.settings.database_url) as s:
            return project_rows(s, model, project_id)

    def _create_io(self, model: Any, what: str, project_id: str, body: Any) -> tuple[Any, bool]:
        """The new row, and whether its webhook secret was generated (shown this once)."""
        _check_io(self.policy(), body.config)
        config, generated = _with_secret(body.config.model_dump(mode="json"), body.type)
        conflict = f"A {what} named {body.name!r} already exists in this project"
        with self._session(conflict) as s:
            require_project(s, project_id)
            refuse_taken_name(s, model, project_id, body.name, what)
            row = model(
                id=new_id(),
                project_id=project_id,
                type=body.type,
                name=body.name,
                config=config,
                created_at=utcnow(),
            )
            s.add(row)
            s.flush()
            return row, generated

    def _update_io(self, model: Any, what: str, row_id: str, body: Any) -> tuple[Any, bool]:
        """Rename and/or reconfigure a source or sink; the config passes the policy again."""
        kind: Literal["source", "sink"] = "source" if model is InspectSource else "sink"
        configs: dict[str, Any] = i.SOURCE_CONFIGS if kind == "source" else i.SINK_CONFIGS
        conflict = f"A {what} named {body.name!r} already exists in this project"
        generated = False
        with self._session(conflict) as s:
            row = s.get(model, row_id)
            if row is None:
                raise NotFound(f"{what.capitalize()} {row_id} not found")
            new_type = body.type or row.type
            if body.config is None and new_type != row.type:
                raise Unprocessable(f"Changing a {what}'s type needs a config for the new type")
            if body.config is not None:
                stored = row.config if new_type == row.type else None
                raw = restore_secrets(new_type, body.config, stored)
                parsed = parse_config(configs[new_type], raw, kind)
                _check_io(self.policy(), parsed)
                row.config, generated = _with_secret(parsed.model_dump(mode="json"), new_type)
                row.type = new_type
            if body.name is not None and body.name != row.name:
                refuse_taken_name(s, model, row.project_id, body.name, what, exclude=row.id)
                row.name = body.name
            s.flush()
            return row, generated

    def _delete_io(self, model: Any, what: str, row_id: str) -> None:
        with session_scope(self.settings.database_url) as s:
            row = s.get(model, row_id)
            if row is None:
                raise NotFound(f"{what.capitalize()} {row_id} not found")
            s.delete(row)

    def list_sources(self, project_id: str) -> list[i.Source]:
        return [_io_out(i.Source, r) for r in self._list_io(InspectSource, project_id)]

    def create_source(self, project_id: str, body: i.SourceCreate) -> i.Source:
        """Create a source; 422 when it reads outside the video roots or may not connect."""
        row, _ = self._create_io(InspectSource, "source", project_id, body)
        return _io_out(i.Source, row, masked=False)

    def update_source(self, source_id: str, body: i.SourceUpdate) -> i.Source:
        row, _ = self._update_io(InspectSource, "source", source_id, body)
        return _io_out(i.Source, row)

    def delete_source(self, source_id: str) -> None:
        self._delete_io(InspectSource, "source", source_id)

    def list_sinks(self, project_id: str) -> list[i.Sink]:
        return [_io_out(i.Sink, r) for r in self._list_io(InspectSink, project_id)]

    def create_sink(self, project_id: str, body: i.SinkCreate) -> i.Sink:
        """Create a sink; 422 when it writes outside the output roots or may not connect.

        The response shows the config as sent (with a generated webhook secret, the only
        time it is shown); listings mask every secret.
        """
        row, _ = self._create_io(InspectSink, "sink", project_id, body)
        return _io_out(i.Sink, row, masked=False)

    def update_sink(self, sink_id: str, body: i.SinkUpdate) -> i.Sink:
        """Change a sink; secrets stay masked, except a webhook secret generated now."""
        row, generated = self._update_io(InspectSink, "sink", sink_id, body)
        return _io_out(i.Sink, row, reveal_secret=generated)

    def delete_sink(self, sink_id: str) -> None:
        self._delete_io(InspectSink, "sink", sink_id)


def _check_io(policy: IoPolicy, config: i.SourceConfig | i.SinkConfig) -> None:
    if isinstance(config, i.WebcamConfig | i.IpCameraConfig | i.VideoFileConfig):
        policy.check_source(config)
    else:
        policy.check_sink(config)


def _with_secret(config: dict[str, Any], type: str) -> tuple[dict[str, Any], bool]:
    """Webhook sinks always sign: a secret of their own unless the client chose one.

    Returns:
        The config, and whether a secret was generated for it.
    """
    if type == "webhook" and not config.get("secret"):
        config["secret"] = f"whsec_{secrets.token_hex(24)}"
        return config, True
    return config, False


def _project_out(p: InspectProject) -> i.Project:
    return i.Project(id=p.id, name=p.name, created_at=p.created_at, updated_at=p.updated_at)


def _media_out(m: InspectMedia) -> i.Media:
    return i.Media(
        id=m.id,
        project_id=m.project_id,
        filename=m.filename,
        label=m.label,  # type: ignore[arg-type]  # stored from an i.Label
        width=m.width,
        height=m.height,
        content_type=m.content_type,
        thumbnail_url=thumbnail_url(m.id),
        has_mask=m.mask_key is not None,
        created_at=m.created_at,
    )


def _snapshot_out(r: InspectSnapshot) -> i.Snapshot:
    return i.Snapshot(
        id=r.id,
        project_id=r.project_id,
        name=r.name,
        media_count=len(r.media_ids),
        created_at=r.created_at,
    )


def _io_out(
    model: Any, r: InspectSource | InspectSink, *, masked: bool = True, reveal_secret: bool = False
) -> Any:
    """A source or sink as responses show it: secrets masked, unless told otherwise."""
    config = mask_config(r.type, r.config) if masked else r.config
    if reveal_secret:
        config["secret"] = r.config["secret"]
    return model(
        id=r.id,
        project_id=r.project_id,
        type=r.type,
        name=r.name,
        config=config,
        created_at=r.created_at,
    )

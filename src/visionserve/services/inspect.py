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
from pathlib import Path
from typing import Any

from PIL import Image
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from visionserve.errors import (
    Conflict,
    NotFound,
    PayloadTooLarge,
    Unprocessable,
    VisionServeError,
)
from visionserve.images import DEFAULT_FORMATS, MIME_TYPES, encode_image, open_image, sniff_format
from visionserve.schemas import inspect as i
from visionserve.settings import Settings
from visionserve.store.blobs import BlobStore
from visionserve.store.db import session_scope
from visionserve.store.records import (
    InspectMedia,
    InspectProject,
    InspectSink,
    InspectSnapshot,
    InspectSource,
    new_id,
    utcnow,
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
    """An uploaded image (media, mask, image to score): size limit, then a safe decode.

    Raises:
        PayloadTooLarge: Over ``limits.max_download_bytes``.
        InvalidFormat, InvalidImage: Not an accepted image, or a corrupt one.
    """
    limit = settings.limits.max_download_bytes
    if len(data) > limit:
        raise PayloadTooLarge(f"{what} too large: the limit is {limit} bytes")
    return open_image(data, allowed=MEDIA_FORMATS, max_pixels=settings.limits.max_image_pixels)


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

    @property
    def database_url(self) -> str:
        return str(self.settings.database_url)

    @contextlib.contextmanager
    def _session(self, conflict: str) -> Iterator[Session]:
        """A transaction whose unique-constraint races become the contract's 409."""
        try:
            with session_scope(self.database_url) as s:
                yield s
        except IntegrityError as exc:
            raise Conflict(conflict) from exc

    # --- projects --------------------------------------------------------------------

    def _name_taken(self, s: Session, name: str, exclude: str | None = None) -> None:
        existing = s.scalar(select(InspectProject.id).where(InspectProject.name == name))
        if existing is not None and existing != exclude:
            raise Conflict(f"A project named {name!r} already exists")

    def list_projects(self) -> list[i.Project]:
        with session_scope(self.database_url) as s:
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
        with session_scope(self.database_url) as s:
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
        with session_scope(self.database_url) as s:
            s.delete(require_project(s, project_id))
        self.blobs.delete_prefix(project_prefix(project_id))

    # --- media -----------------------------------------------------------------------

    def list_media(
        self, project_id: str, *, label: i.Label | None, limit: int, offset: int
    ) -> i.MediaPage:
        with session_scope(self.database_url) as s:
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
        with session_scope(self.database_url) as s:
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
        with session_scope(self.database_url) as s:
            media = self._media(s, media_id)
            key, content_type = media.image_key, media.content_type
        return self.blobs.get(key), content_type

    def media_thumbnail(self, media_id: str) -> bytes:
        with session_scope(self.database_url) as s:
            key = self._media(s, media_id).thumbnail_key
        return self.blobs.get(key)

    def delete_media(self, media_id: str) -> None:
        with session_scope(self.database_url) as s:
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
        with session_scope(self.database_url) as s:
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
        with session_scope(self.database_url) as s:
            media = self._media(s, media_id)
            media.mask_key = mask_key
            s.flush()
            return _media_out(media)

    def media_mask(self, media_id: str) -> bytes:
        with session_scope(self.database_url) as s:
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
        with session_scope(self.database_url) as s:
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

    def _list_io(self, model: Any, project_id: str) -> list[Any]:
        with session_scope(self.database_url) as s:
            return project_rows(s, model, project_id)

    def _check_path(self, body: Any) -> None:
        """Keep file sources and sinks inside the configured roots, if any."""
        roots = self.settings.inspect.file_roots
        path = getattr(body.config, "path", None) or getattr(body.config, "output_dir", None)
        if not roots or path is None or body.type not in ("video_file", "filesystem"):
            return
        resolved = Path(path).expanduser().resolve()
        if not any(resolved.is_relative_to(Path(r).expanduser().resolve()) for r in roots):
            allowed = ", ".join(str(r) for r in roots)
            raise Unprocessable(f"{path} is outside the allowed folders ({allowed})")

    def _create_io(self, model: Any, what: str, project_id: str, body: Any) -> Any:
        self._check_path(body)
        conflict = f"A {what} named {body.name!r} already exists in this project"
        with self._session(conflict) as s:
            require_project(s, project_id)
            refuse_taken_name(s, model, project_id, body.name, what)
            row = model(
                id=new_id(),
                project_id=project_id,
                type=body.type,
                name=body.name,
                config=_with_secret(body.config.model_dump(mode="json"), body.type),
                created_at=utcnow(),
            )
            s.add(row)
            s.flush()
            return row

    def _delete_io(self, model: Any, what: str, row_id: str) -> None:
        with session_scope(self.database_url) as s:
            row = s.get(model, row_id)
            if row is None:
                raise NotFound(f"{what.capitalize()} {row_id} not found")
            s.delete(row)

    def list_sources(self, project_id: str) -> list[i.Source]:
        return [_io_out(i.Source, r) for r in self._list_io(InspectSource, project_id)]

    def create_source(self, project_id: str, body: i.SourceCreate) -> i.Source:
        return _io_out(i.Source, self._create_io(InspectSource, "source", project_id, body))

    def delete_source(self, source_id: str) -> None:
        self._delete_io(InspectSource, "source", source_id)

    def list_sinks(self, project_id: str) -> list[i.Sink]:
        return [_io_out(i.Sink, r) for r in self._list_io(InspectSink, project_id)]

    def create_sink(self, project_id: str, body: i.SinkCreate) -> i.Sink:
        return _io_out(i.Sink, self._create_io(InspectSink, "sink", project_id, body))

    def delete_sink(self, sink_id: str) -> None:
        self._delete_io(InspectSink, "sink", sink_id)


def _with_secret(config: dict[str, Any], type: str) -> dict[str, Any]:
    """Webhook sinks always sign: a secret of their own unless the client chose one."""
    if type == "webhook" and not config.get("secret"):
        config["secret"] = f"whsec_{secrets.token_hex(24)}"
    return config


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


def _io_out(model: Any, r: InspectSource | InspectSink) -> Any:
    return model(
        id=r.id,
        project_id=r.project_id,
        type=r.type,
        name=r.name,
        config=r.config,
        created_at=r.created_at,
    )

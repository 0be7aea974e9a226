"""Where inspect sources may read from and sinks may write or connect to.

Out of the box a ``video_file`` source reads only under ``<home>/inspect/videos`` and a
``filesystem`` sink writes only under ``<home>/inspect/output``; relative paths resolve
against those folders, and ``inspect.video_roots`` / ``inspect.output_roots`` add
others. A path counts where it really leads: ``..`` and symlinks are resolved first.

Network destinations go through the egress policy (:mod:`visionserve.platform.egress`).
An ``ip_camera`` URL or an MQTT broker may be on a private LAN, where cameras and
brokers live (``inspect.allow_private_networks``, on by default), but never on a
loopback, link-local or cloud metadata address unless ``egress.allow`` lists it. A
webhook URL gets exactly the policy of the outbox that sends its deliveries, so a
sink is never accepted only to have every delivery refused.

Checked when a source or sink is created or changed (422), when a pipeline starts,
and again where the pipeline opens the file or connects: symlinks and DNS answers
change in between. A host name that does not resolve yet is accepted at creation
(the camera may not be up) and refused where the pipeline connects.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from visionserve.errors import EgressRefused, FetchFailed, Unprocessable
from visionserve.platform.egress import EgressPolicy
from visionserve.settings import Settings
from visionserve.surfaces.inspect.masking import mask_url
from visionserve.surfaces.inspect.schemas import (
    FilesystemConfig,
    IpCameraConfig,
    MqttConfig,
    SinkConfig,
    SourceConfig,
    VideoFileConfig,
    WebhookConfig,
)

log = logging.getLogger(__name__)

#: The private LAN ranges ``inspect.allow_private_networks`` opens to cameras and brokers.
PRIVATE_LANS = ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7")
_ALLOW_HINT = "VISIONSERVE_EGRESS__ALLOW lists hosts and networks that may be reached anyway"
_LAN_HINT = f"{_ALLOW_HINT}; VISIONSERVE_INSPECT__ALLOW_PRIVATE_NETWORKS opens private LANs"


class DestinationRefused(Unprocessable):
    """A path outside the allowed folders, or a network address the policy refuses."""

    code = "destination_not_allowed"


@dataclass(frozen=True)
class IoPolicy:
    """The folders and network destinations inspect sources and sinks may use.

    Attributes:
        video_roots: Folders ``video_file`` sources may read; relative paths resolve
            against the first.
        output_roots: Folders ``filesystem`` sinks may write; relative paths resolve
            against the first.
        network: The egress policy of cameras and MQTT brokers.
        webhooks: The egress policy of webhook sinks (the outbox's own).
    """

    video_roots: tuple[Path, ...]
    output_roots: tuple[Path, ...]
    network: EgressPolicy
    webhooks: EgressPolicy

    @classmethod
    def from_settings(cls, settings: Settings) -> IoPolicy:
        """The policy of ``settings.inspect`` and ``settings.egress``."""
        inspect, home = settings.inspect, settings.home

        def roots(default: str, extra: Sequence[Path]) -> tuple[Path, ...]:
            # home is absolute: relative entries land under it, absolute ones stay.
            return tuple(home / p.expanduser() for p in [Path("inspect", default), *extra])

        lans = list(PRIVATE_LANS) if inspect.allow_private_networks else []
        network = settings.egress.model_copy(update={"allow": [*settings.egress.allow, *lans]})
        return cls(
            video_roots=roots("videos", inspect.video_roots),
            output_roots=roots("output", inspect.output_roots),
            network=EgressPolicy(network),
            webhooks=EgressPolicy(settings.egress),
        )

    # --- files -------------------------------------------------------------------------

    def video_path(self, path: str) -> Path:
        """The file a ``video_file`` source reads, resolved.

        Raises:
            DestinationRefused: It resolves outside every video root.
        """
        return _confine(path, self.video_roots, "video files", "VIDEO_ROOTS")

    def output_dir(self, path: str) -> Path:
        """The folder a ``filesystem`` sink writes to, resolved.

        Raises:
            DestinationRefused: It resolves outside every output root.
        """
        return _confine(path, self.output_roots, "filesystem sinks", "OUTPUT_ROOTS")

    # --- network -----------------------------------------------------------------------

    def camera(self, url: str) -> str | None:
        """Check an ``ip_camera`` URL's host.

        Returns:
            The checked address, or None when the name does not resolve.

        Raises:
            DestinationRefused: The host resolves to an address the policy refuses.
        """
        return _check_host(self.network, urlsplit(url).hostname, f"IP camera {mask_url(url)}")

    def broker(self, broker: str) -> str | None:
        """Check an MQTT broker URL's host (see :meth:`camera`)."""
        return _check_host(
            self.network, urlsplit(broker).hostname, f"MQTT broker {mask_url(broker)}"
        )

    def webhook(self, url: str) -> None:
        """Check a webhook URL as the outbox will (a name that does not resolve passes).

        Raises:
            DestinationRefused: The outbox would refuse to deliver to it.
        """
        try:
            self.webhooks.check(url)
        except EgressRefused as exc:
            raise DestinationRefused(f"webhook URL {url}: {exc.message}; {_ALLOW_HINT}") from None
        except FetchFailed as exc:
            log.info("webhook URL %s not checked yet: %s", url, exc.message)

    # --- configs -----------------------------------------------------------------------

    def check_source(self, config: SourceConfig) -> None:
        """Refuse a source config that reads outside the roots or connects where it may not.

        Raises:
            DestinationRefused: See :meth:`video_path` and :meth:`camera`.
        """
        if isinstance(config, VideoFileConfig):
            self.video_path(config.path)
        elif isinstance(config, IpCameraConfig):
            self.camera(config.url)

    def check_sink(self, config: SinkConfig) -> None:
        """Refuse a sink config that writes outside the roots or connects where it may not.

        Raises:
            DestinationRefused: See :meth:`output_dir`, :meth:`broker` and :meth:`webhook`.
        """
        if isinstance(config, FilesystemConfig):
            self.output_dir(config.output_dir)
        elif isinstance(config, MqttConfig):
            self.broker(config.broker)
        elif isinstance(config, WebhookConfig):
            self.webhook(config.url)


def _confine(path: str, roots: Sequence[Path], what: str, setting: str) -> Path:
    """``path`` resolved (against ``roots[0]`` when relative), if inside one of ``roots``."""
    allowed = (
        f"the allowed folders for {what}: {', '.join(str(r) for r in roots)} (relative "
        f"paths resolve against {roots[0]}; VISIONSERVE_INSPECT__{setting} adds folders)"
    )
    try:
        # No ~ expansion: a client's path must not depend on the server user's home.
        real = Path(os.path.realpath(roots[0] / path))  # an absolute path replaces roots[0]
    except (ValueError, OSError):  # an embedded NUL byte, for one
        raise DestinationRefused(f"{path!r} is not a valid path; {allowed}") from None
    for root in roots:
        if real.is_relative_to(os.path.realpath(root)):
            return real
    raise DestinationRefused(f"{path} is outside {allowed}")


def _check_host(policy: EgressPolicy, host: str | None, what: str) -> str | None:
    if not host:
        raise DestinationRefused(f"{what} has no host")
    try:
        return policy.check_host(host)
    except EgressRefused as exc:
        raise DestinationRefused(f"{what}: {exc.message}; {_LAN_HINT}") from None
    except FetchFailed as exc:
        log.info("%s not checked: %s", what, exc.message)
        return None

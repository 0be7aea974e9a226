"""Write-only secrets of sources and sinks.

Responses show every secret as :data:`~visionserve.surfaces.inspect.schemas.MASK`: a
camera or broker URL's password, an MQTT password, webhook header values and the
webhook signing secret. A client that edits a config it read sends the mask back; the
stored secret is then kept (:func:`restore_secrets`). A password or header only while
the destination (scheme, host and port) is unchanged, so that nobody can point a sink
elsewhere and have the old credentials sent there; the signing secret, which never
leaves the server, always.
"""

from __future__ import annotations

import copy
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from visionserve.errors import Unprocessable
from visionserve.surfaces.inspect.schemas import MASK

#: Config fields that are URLs which may carry ``user:password@``, per type.
_URL_FIELDS = {"ip_camera": "url", "mqtt": "broker", "webhook": "url"}


def mask_url(url: str) -> str:
    """``url`` with the password of its ``user:password@`` part masked."""
    parts = urlsplit(url)
    userinfo, at, hostport = parts.netloc.rpartition("@")
    user, colon, _ = userinfo.partition(":")
    if not at or not colon:
        return url
    return urlunsplit(parts._replace(netloc=f"{user}:{MASK}@{hostport}"))


def mask_config(type: str, config: dict[str, Any]) -> dict[str, Any]:
    """A stored source or sink config as responses show it."""
    out = copy.deepcopy(config)
    field = _URL_FIELDS.get(type)
    if field and isinstance(out.get(field), str):
        out[field] = mask_url(out[field])
    if type == "mqtt" and out.get("password") is not None:
        out["password"] = MASK
    if type == "webhook":
        if out.get("secret") is not None:
            out["secret"] = MASK
        if isinstance(out.get("headers"), dict):
            out["headers"] = dict.fromkeys(out["headers"], MASK)
    return out


def restore_secrets(
    type: str, config: dict[str, Any], stored: dict[str, Any] | None
) -> dict[str, Any]:
    """``config`` from a PATCH with every mask replaced by the stored secret.

    Args:
        type: The source or sink type ``config`` is for.
        config: The config as the client sent it (not validated yet).
        stored: The stored config, when it is of the same type; else None.

    Returns:
        A new config, to be validated as usual. A webhook config without ``secret``
        keeps the stored signing secret.

    Raises:
        Unprocessable: A mask with no stored secret to keep, or for a password or
            header of a destination that changed.
    """
    out = copy.deepcopy(config)
    field = _URL_FIELDS.get(type)
    same_place = (
        stored is not None
        and field is not None
        and _destination(out.get(field)) is not None
        and _destination(out.get(field)) == _destination(stored.get(field))
    )

    def kept(what: str, value: Any, needs_same_place: bool = True) -> Any:
        if value is None or stored is None or (needs_same_place and not same_place):
            raise Unprocessable(
                f"{what} is the mask {MASK}, and there is no stored value to keep for this "
                "destination; send the value itself"
            )
        return value

    if field and isinstance(out.get(field), str) and _password(out[field]) == MASK:
        stored_url = stored.get(field) if stored else None
        password = _password(stored_url) if isinstance(stored_url, str) else None
        out[field] = _with_password(out[field], kept(f"the password in {field}", password))
    if type == "mqtt" and out.get("password") == MASK:
        out["password"] = kept("password", stored.get("password") if stored else None)
    if type == "webhook":
        if stored is not None and out.get("secret") in (None, MASK):
            out["secret"] = kept("secret", stored.get("secret"), needs_same_place=False)
        elif out.get("secret") == MASK:
            kept("secret", None)
        headers = out.get("headers")
        if isinstance(headers, dict):
            before = stored.get("headers") if stored else None
            by_name = (
                {str(k).lower(): v for k, v in before.items()} if isinstance(before, dict) else {}
            )
            for name, value in headers.items():
                if value == MASK:
                    headers[name] = kept(f"header {name}", by_name.get(str(name).lower()))
    return out


def _destination(url: Any) -> tuple[str, str] | None:
    """Scheme and ``host:port`` of a URL, what a secret may be sent to."""
    if not isinstance(url, str):
        return None
    parts = urlsplit(url)
    hostport = parts.netloc.rpartition("@")[2].lower()
    return (parts.scheme.lower(), hostport) if hostport else None


def _password(url: str) -> str | None:
    userinfo, at, _ = urlsplit(url).netloc.rpartition("@")
    _, colon, password = userinfo.partition(":")
    return password if at and colon else None


def _with_password(url: str, password: str) -> str:
    parts = urlsplit(url)
    userinfo, _, hostport = parts.netloc.rpartition("@")
    user = userinfo.partition(":")[0]
    return urlunsplit(parts._replace(netloc=f"{user}:{password}@{hostport}"))

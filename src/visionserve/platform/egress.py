"""Egress policy for every outbound URL: ``image_url`` inputs, callback URLs, webhooks.

A URL a client hands us must never let it reach our own network (SSRF): cloud
metadata at 169.254.169.254, internal services on 10.x, the loopback interface.
:meth:`EgressPolicy.check` resolves the host and refuses the URL if *any* address
is non-public, before a single packet is sent; the request then goes to the
checked address itself (:func:`pinned_request_args`), so a DNS answer that
changes between the check and the connection (DNS rebinding) cannot redirect it.
Redirects are followed by hand so that every hop is checked the same way.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from visionserve.errors import EgressRefused, FetchFailed, PayloadTooLarge
from visionserve.settings import EgressSettings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str], Sequence[str]]

_DEFAULT_PORTS = {"http": 80, "https": 443}
_REDIRECT_STATUSES = {301, 302, 303, 307, 308}
_CGNAT = ipaddress.IPv4Network("100.64.0.0/10")


@dataclass(frozen=True)
class ResolvedTarget:
    """A URL that passed the policy, with the address to connect to.

    Attributes:
        scheme: ``"http"`` or ``"https"``.
        host: The host name as sent on the wire (IDNA-encoded, lower case), or the
            IP literal without brackets.
        port: The port, with the scheme's default filled in.
        ip: The checked address the request must be sent to.
    """

    scheme: str
    host: str
    port: int
    ip: str


@dataclass(frozen=True)
class Fetched:
    """The body of a fetched URL.

    Attributes:
        content: The (decoded) response body.
        content_type: The ``Content-Type`` header, if the server sent one.
        url: The final URL after redirects.
    """

    content: bytes
    content_type: str | None
    url: str


def resolve_host(host: str) -> list[str]:
    """Resolve a host name to its IP addresses with the system resolver.

    Args:
        host: An ASCII host name.

    Returns:
        The distinct addresses, in the resolver's order of preference.
    """
    infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def blocked_reason(addr: IPAddress) -> str | None:
    """Say why an address must not be reached from a client-supplied URL.

    Args:
        addr: The address to classify.

    Returns:
        A short description such as ``"private network address 10.0.0.1"``, or
        None for a public address.
    """
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        # ::ffff:10.0.0.1 reaches 10.0.0.1 on a dual-stack socket.
        inner = blocked_reason(addr.ipv4_mapped)
        return f"IPv4-mapped {inner}" if inner else None
    if addr.is_unspecified:
        why = "unspecified address"
    elif addr.is_loopback:
        why = "loopback address"
    elif addr.is_link_local:
        why = "link-local address (cloud metadata range)"
    elif addr.is_multicast:
        why = "multicast address"
    elif isinstance(addr, ipaddress.IPv4Address) and addr in _CGNAT:
        why = "carrier-grade NAT address"
    elif addr.is_private or (isinstance(addr, ipaddress.IPv6Address) and addr.is_site_local):
        why = "private network address"
    elif addr.is_reserved:
        why = "reserved address"
    elif not addr.is_global:
        why = "non-public address"
    else:
        return None
    return f"{why} {addr}"


def pinned_request_args(
    target: ResolvedTarget, url: str
) -> tuple[str, dict[str, str], dict[str, Any]]:
    """Arguments for an httpx request to ``url`` that connects to ``target.ip`` only.

    The URL's host is replaced by the checked IP, the original host travels in the
    ``Host`` header and, for https, as the TLS server name (``sni_hostname``), so
    certificate verification still uses the name. Webhook delivery and
    :meth:`EgressPolicy.fetch` share this so that both pin the same way.

    Args:
        target: The result of :meth:`EgressPolicy.check` for ``url``.
        url: The URL that was checked.

    Returns:
        ``(request_url, headers, extensions)`` to pass to ``httpx`` as ``url``,
        ``headers`` and ``extensions``.
    """
    parsed = httpx.URL(url)
    request_url = str(parsed.copy_with(host=target.ip))
    host = f"[{target.host}]" if ":" in target.host else target.host
    if target.port != _DEFAULT_PORTS[target.scheme]:
        host = f"{host}:{target.port}"
    extensions: dict[str, Any] = {"sni_hostname": target.host} if target.scheme == "https" else {}
    return request_url, {"Host": host}, extensions


class EgressPolicy:
    """Checks and fetches outbound URLs according to :class:`EgressSettings`.

    Args:
        settings: Allow-list, timeout and redirect limit.
        resolver: Maps a host name to its IP addresses; tests inject fake DNS
            answers here. Defaults to :func:`resolve_host`.

    Raises:
        ValueError: An allow-list entry looks like a network but is not a valid one.
    """

    def __init__(self, settings: EgressSettings, *, resolver: Resolver | None = None) -> None:
        self.timeout_s = settings.timeout_s
        self.max_redirects = settings.max_redirects
        self._resolve = resolver or resolve_host
        self._allowed_nets: list[IPNetwork] = []
        self._allowed_hosts: set[str] = set()
        for entry in settings.allow:
            try:
                self._allowed_nets.append(ipaddress.ip_network(entry.strip(), strict=False))
            except ValueError:
                if "/" in entry or ":" in entry:
                    raise ValueError(f"invalid egress allow entry {entry!r}") from None
                self._allowed_hosts.add(_normalise_host(entry))

    def check(self, url: str) -> ResolvedTarget:
        """Check a URL against the policy and choose the address to connect to.

        Args:
            url: An absolute http(s) URL.

        Returns:
            The host, port and checked IP to connect to.

        Raises:
            EgressRefused: Not http(s), no host, embedded credentials, or any
                resolved address is non-public and not allow-listed.
            FetchFailed: The host name does not resolve.
        """
        try:
            parsed = httpx.URL(url)
        except (httpx.InvalidURL, TypeError) as exc:
            raise EgressRefused(f"invalid URL: {exc}") from None
        if parsed.scheme not in _DEFAULT_PORTS:
            raise EgressRefused(
                f"URL scheme {parsed.scheme or '(none)'!r} is not allowed; use http or https"
            )
        if parsed.userinfo:
            raise EgressRefused("URLs with embedded credentials (user:password@) are not allowed")
        host = _normalise_host(parsed.raw_host.decode("ascii"))
        if not host:
            raise EgressRefused("URL has no host")
        port = parsed.port or _DEFAULT_PORTS[parsed.scheme]
        ip = self.check_host(host)
        return ResolvedTarget(scheme=parsed.scheme, host=host, port=port, ip=ip)

    def check_host(self, host: str) -> str:
        """Check a bare host name or IP literal against the policy.

        For destinations that are not http(s) URLs (an RTSP camera, an MQTT broker):
        the same rules as :meth:`check`, without the URL rules.

        Args:
            host: A host name or an IP literal (IPv6 without brackets).

        Returns:
            The checked address to connect to.

        Raises:
            EgressRefused: No host, or any resolved address is non-public and not
                allow-listed.
            FetchFailed: The host name does not resolve.
        """
        host = _normalise_host(host)
        if not host:
            raise EgressRefused("no host given")
        try:
            addresses = [ipaddress.ip_address(host)]
        except ValueError:
            addresses = self._lookup(host)

        if host not in self._allowed_hosts:
            for addr in addresses:
                why = blocked_reason(addr)
                if why and not self._address_allowed(addr):
                    raise EgressRefused(
                        f"refusing to connect to {host}: {why}",
                        details={"host": host, "address": str(addr)},
                    )
        return str(addresses[0])

    def client_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for an ``httpx`` client that sends pinned requests.

        Returns:
            Options that keep httpx from undoing the policy: no automatic
            redirects (each hop must be checked), no proxy from the environment
            (it would connect by name), and no connection reuse (a pooled
            connection is keyed by IP and could carry a request for another name
            over a TLS session verified for the first).
        """
        return {
            "timeout": httpx.Timeout(self.timeout_s),
            "follow_redirects": False,
            "trust_env": False,
            "limits": httpx.Limits(max_keepalive_connections=0),
        }

    async def fetch(self, url: str, *, max_bytes: int, accept: str | None = None) -> Fetched:
        """GET a URL under the policy, following redirects by hand.

        Args:
            url: An absolute http(s) URL supplied by a client.
            max_bytes: The largest body accepted, after content decoding.
            accept: An optional ``Accept`` header value.

        Returns:
            The body, its content type and the final URL.

        Raises:
            EgressRefused: The URL, or any redirect target, is refused by :meth:`check`.
            FetchFailed: Unresolvable, unreachable, timed out, too many redirects,
                or an HTTP status of 400 or more.
            PayloadTooLarge: The body is larger than ``max_bytes``.
        """
        try:
            async with (
                asyncio.timeout(self.timeout_s),
                httpx.AsyncClient(**self.client_kwargs()) as client,
            ):
                current = url
                for _ in range(self.max_redirects + 1):
                    target = await asyncio.to_thread(self.check, current)
                    result = await self._get(client, target, current, max_bytes, accept)
                    if isinstance(result, Fetched):
                        return result
                    current = result
        except TimeoutError:
            raise FetchFailed(f"timed out after {self.timeout_s:g}s fetching {url}") from None
        raise FetchFailed(f"too many redirects (more than {self.max_redirects}) fetching {url}")

    async def _get(
        self,
        client: httpx.AsyncClient,
        target: ResolvedTarget,
        url: str,
        max_bytes: int,
        accept: str | None,
    ) -> Fetched | str:
        """One pinned GET: the body, or the absolute URL a redirect points to."""
        request_url, headers, extensions = pinned_request_args(target, url)
        if accept:
            headers["Accept"] = accept
        where = f"{target.host}:{target.port}"
        try:
            async with client.stream(
                "GET", request_url, headers=headers, extensions=extensions
            ) as response:
                if response.status_code in _REDIRECT_STATUSES:
                    location = response.headers.get("Location")
                    if not location:
                        raise FetchFailed(f"redirect without a Location from {where}")
                    # Relative locations resolve against the URL as the client wrote
                    # it, not against the pinned IP.
                    return str(httpx.URL(url).join(location))
                if response.status_code >= 400:
                    raise FetchFailed(
                        f"{where} answered HTTP {response.status_code}",
                        details={"status": response.status_code},
                    )
                declared = response.headers.get("Content-Length", "")
                if declared.isdigit() and int(declared) > max_bytes:
                    raise _too_large(max_bytes)
                body = bytearray()
                # aiter_bytes decodes gzip/deflate, so the limit also stops
                # compression bombs.
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) > max_bytes:
                        raise _too_large(max_bytes)
                return Fetched(bytes(body), response.headers.get("Content-Type"), url)
        except httpx.TimeoutException:
            raise FetchFailed(f"timed out talking to {where}") from None
        except httpx.HTTPError as exc:
            raise FetchFailed(
                f"could not fetch from {where}: {str(exc) or type(exc).__name__}"
            ) from None

    def _lookup(self, host: str) -> list[IPAddress]:
        try:
            answers = self._resolve(host)
        except (OSError, UnicodeError) as exc:
            raise FetchFailed(f"could not resolve host {host}: {exc}") from None
        addresses = []
        for answer in answers:
            try:
                addresses.append(ipaddress.ip_address(answer))
            except ValueError:
                raise FetchFailed(f"resolver gave a bad address {answer!r} for {host}") from None
        if not addresses:
            raise FetchFailed(f"could not resolve host {host}: no addresses")
        return addresses

    def _address_allowed(self, addr: IPAddress) -> bool:
        candidates: list[IPAddress] = [addr]
        if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
            candidates.append(addr.ipv4_mapped)
        return any(a in net for a in candidates for net in self._allowed_nets)


def _normalise_host(host: str) -> str:
    # "Example.COM." and "example.com" name the same host; compare one form.
    return host.strip().lower().rstrip(".")


def _too_large(max_bytes: int) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"response body exceeds the limit of {max_bytes} bytes",
        details={"max_bytes": max_bytes},
    )

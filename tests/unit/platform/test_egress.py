"""Egress policy: refusals happen before any connection; fetches only touch 127.0.0.1."""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from visionserve.errors import EgressRefused, FetchFailed, PayloadTooLarge
from visionserve.platform.egress import EgressPolicy, ResolvedTarget, pinned_request_args
from visionserve.settings import EgressSettings

FAKE_DNS = {
    "public.example": ["93.184.216.34"],
    "internal.example": ["10.0.0.1"],
    "metadata.example": ["169.254.169.254"],
    "mixed.example": ["93.184.216.34", "10.0.0.1"],
    "local.test": ["127.0.0.1"],
}


def fake_resolver(host: str) -> list[str]:
    if host not in FAKE_DNS:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
    return FAKE_DNS[host]


def policy(allow: list[str] | None = None, **kwargs: object) -> EgressPolicy:
    settings = EgressSettings(allow=allow or [], **kwargs)
    return EgressPolicy(settings, resolver=fake_resolver)


@pytest.fixture(autouse=True)
def sent_requests(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every URL httpx actually sends; refuses anything but loopback outright."""
    sent: list[str] = []
    original = httpx.AsyncHTTPTransport.handle_async_request

    async def spy(self: httpx.AsyncHTTPTransport, request: httpx.Request) -> httpx.Response:
        sent.append(str(request.url))
        assert request.url.host == "127.0.0.1", f"test tried to reach {request.url}"
        return await original(self, request)

    monkeypatch.setattr(httpx.AsyncHTTPTransport, "handle_async_request", spy)
    return sent


# -- check() -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://10.0.0.1/x", "private network address 10.0.0.1"),
        ("http://169.254.169.254/latest/meta-data", "link-local address"),
        ("http://[::1]/", "loopback address ::1"),
        ("http://127.0.0.1", "loopback address 127.0.0.1"),
        ("http://0.0.0.0/", "unspecified address"),
        ("http://100.64.0.1/", "carrier-grade NAT address"),
        ("http://224.0.0.1/", "multicast address"),
        ("http://[fe80::1]/", "link-local address"),
        ("http://[::ffff:10.0.0.1]/", "IPv4-mapped private network address 10.0.0.1"),
        ("http://[::ffff:169.254.169.254]/", "IPv4-mapped link-local"),
        ("http://internal.example/", "private network address 10.0.0.1"),
        ("http://metadata.example/latest/meta-data", "link-local address"),
        ("http://mixed.example/", "private network address 10.0.0.1"),
        ("http://local.test:8080/", "loopback address 127.0.0.1"),
    ],
)
def test_refuses_non_public_addresses(url: str, reason: str) -> None:
    with pytest.raises(EgressRefused) as exc_info:
        policy().check(url)
    assert reason in exc_info.value.message
    assert exc_info.value.code == "url_not_allowed"
    assert exc_info.value.details["host"] in exc_info.value.message
    assert ipaddress.ip_address(exc_info.value.details["address"])


def test_refusal_names_the_host() -> None:
    with pytest.raises(EgressRefused, match=r"internal\.example: private network address 10\.0"):
        policy().check("http://internal.example/img.png")


@pytest.mark.parametrize(
    ("url", "match"),
    [
        ("ftp://public.example/x.png", "scheme 'ftp'"),
        ("file:///etc/passwd", "scheme 'file'"),
        ("gopher://public.example/", "scheme 'gopher'"),
        ("/relative/path.png", "scheme"),
        ("http:///no-host", "no host"),
        ("http://user:secret@public.example/", "credentials"),
        ("http://user@public.example/", "credentials"),
    ],
)
def test_refuses_bad_urls(url: str, match: str) -> None:
    with pytest.raises(EgressRefused, match=match):
        policy().check(url)


def test_unresolvable_host_fails_to_fetch() -> None:
    with pytest.raises(FetchFailed, match=r"could not resolve host nowhere\.example"):
        policy().check("http://nowhere.example/")


@pytest.mark.parametrize("allow", [["127.0.0.1"], ["127.0.0.0/8"], ["local.test"]])
def test_allow_list_admits_loopback(allow: list[str]) -> None:
    target = policy(allow).check("http://local.test:8080/a.png")
    assert target == ResolvedTarget(scheme="http", host="local.test", port=8080, ip="127.0.0.1")
    assert policy(["127.0.0.0/8"]).check("http://127.0.0.1/").ip == "127.0.0.1"


def test_allow_list_is_narrow() -> None:
    with pytest.raises(EgressRefused):
        policy(["127.0.0.1"]).check("http://10.0.0.1/")
    with pytest.raises(EgressRefused):
        policy(["local.test"]).check("http://internal.example/")


def test_invalid_allow_entry_is_a_configuration_error() -> None:
    with pytest.raises(ValueError, match="invalid egress allow entry"):
        policy(["10.0.0.0/33"])


def test_public_host_passes_without_connecting(sent_requests: list[str]) -> None:
    target = policy().check("https://Public.Example./img.png?x=1")
    assert target == ResolvedTarget(
        scheme="https", host="public.example", port=443, ip="93.184.216.34"
    )
    assert sent_requests == []


def test_pinned_request_args() -> None:
    target = ResolvedTarget(scheme="https", host="public.example", port=8443, ip="93.184.216.34")
    url, headers, extensions = pinned_request_args(target, "https://public.example:8443/a?b=1")
    assert url == "https://93.184.216.34:8443/a?b=1"
    assert headers == {"Host": "public.example:8443"}
    assert extensions == {"sni_hostname": "public.example"}

    plain = ResolvedTarget(scheme="http", host="public.example", port=80, ip="2606:4700::1")
    url, headers, extensions = pinned_request_args(plain, "http://public.example/a")
    assert url == "http://[2606:4700::1]/a"
    assert headers == {"Host": "public.example"}
    assert extensions == {}


# -- fetch() against a loopback server -----------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    hits: dict[str, int] = {}

    def log_message(self, format: str, *args: object) -> None:
        pass  # keep test output clean

    def do_GET(self) -> None:
        self.hits[self.path] = self.hits.get(self.path, 0) + 1
        # The client hangs up on purpose when a body is over its size limit.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self._route()

    def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _redirect(self, location: str) -> None:
        self._send(302, b"", {"Location": location})

    def _route(self) -> None:
        port = self.server.server_address[1]
        if self.path == "/image.png":
            self._send(200, b"\x89PNG fake", {"Content-Type": "image/png"})
        elif self.path == "/host":
            self._send(200, self.headers["Host"].encode(), {"Content-Type": "text/plain"})
        elif self.path == "/chunked":
            self.close_connection = True
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for _ in range(64):
                self.wfile.write(b"400\r\n" + b"x" * 1024 + b"\r\n")
            self.wfile.write(b"0\r\n\r\n")
        elif self.path == "/declared-large":
            self.close_connection = True
            self.send_response(200)
            self.send_header("Content-Length", str(10 * 1024 * 1024))
            self.end_headers()
            self.wfile.write(b"x" * 100)
        elif self.path == "/slow":
            time.sleep(1.5)
            self._send(200, b"late")
        elif self.path == "/missing":
            self._send(404, b"not here")
        elif self.path == "/to-private":
            self._redirect("http://10.0.0.1/latest")
        elif self.path == "/to-metadata-name":
            self._redirect("http://metadata.example/latest/meta-data")
        elif self.path == "/loop":
            self._redirect("/loop")
        elif self.path == "/hop":
            self._redirect(f"http://local.test:{port}/image.png")
        else:
            self._send(500, b"unexpected path")


@pytest.fixture(scope="module")
def server() -> Iterator[int]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd.server_address[1]
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def loopback() -> EgressPolicy:
    return policy(["127.0.0.1"], timeout_s=5.0, max_redirects=2)


async def test_fetch_returns_content_and_type(server: int, loopback: EgressPolicy) -> None:
    fetched = await loopback.fetch(f"http://local.test:{server}/image.png", max_bytes=1024)
    assert fetched.content == b"\x89PNG fake"
    assert fetched.content_type == "image/png"
    assert fetched.url == f"http://local.test:{server}/image.png"


async def test_fetch_connects_to_the_checked_ip_with_the_original_host(
    server: int, loopback: EgressPolicy, sent_requests: list[str]
) -> None:
    fetched = await loopback.fetch(f"http://local.test:{server}/host", max_bytes=1024)
    assert fetched.content == f"local.test:{server}".encode()
    assert sent_requests == [f"http://127.0.0.1:{server}/host"]


async def test_fetch_follows_a_checked_redirect(server: int, loopback: EgressPolicy) -> None:
    fetched = await loopback.fetch(f"http://127.0.0.1:{server}/hop", max_bytes=1024)
    assert fetched.content == b"\x89PNG fake"
    assert fetched.url == f"http://local.test:{server}/image.png"


async def test_chunked_body_over_limit(server: int, loopback: EgressPolicy) -> None:
    with pytest.raises(PayloadTooLarge, match="4096 bytes"):
        await loopback.fetch(f"http://127.0.0.1:{server}/chunked", max_bytes=4096)


async def test_declared_length_over_limit(server: int, loopback: EgressPolicy) -> None:
    with pytest.raises(PayloadTooLarge):
        await loopback.fetch(f"http://127.0.0.1:{server}/declared-large", max_bytes=4096)


async def test_error_status(server: int, loopback: EgressPolicy) -> None:
    with pytest.raises(FetchFailed, match="HTTP 404") as exc_info:
        await loopback.fetch(f"http://127.0.0.1:{server}/missing", max_bytes=1024)
    assert exc_info.value.details == {"status": 404}


@pytest.mark.parametrize("path", ["/to-private", "/to-metadata-name"])
async def test_redirect_to_private_is_refused_before_connecting(
    server: int, loopback: EgressPolicy, sent_requests: list[str], path: str
) -> None:
    with pytest.raises(EgressRefused):
        await loopback.fetch(f"http://127.0.0.1:{server}{path}", max_bytes=1024)
    assert sent_requests == [f"http://127.0.0.1:{server}{path}"]


async def test_redirect_loop(server: int, loopback: EgressPolicy) -> None:
    _Handler.hits.pop("/loop", None)
    with pytest.raises(FetchFailed, match="too many redirects"):
        await loopback.fetch(f"http://127.0.0.1:{server}/loop", max_bytes=1024)
    assert _Handler.hits["/loop"] == 3  # the first request and max_redirects=2 hops


async def test_timeout(server: int) -> None:
    slow = policy(["127.0.0.1"], timeout_s=0.3)
    with pytest.raises(FetchFailed, match="timed out"):
        await slow.fetch(f"http://127.0.0.1:{server}/slow", max_bytes=1024)


async def test_connection_refused(loopback: EgressPolicy) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed_port = sock.getsockname()[1]
    with pytest.raises(FetchFailed, match=f"127.0.0.1:{closed_port}"):
        await loopback.fetch(f"http://127.0.0.1:{closed_port}/x", max_bytes=1024)


async def test_fetch_refuses_before_connecting(sent_requests: list[str]) -> None:
    with pytest.raises(EgressRefused):
        await policy().fetch("http://169.254.169.254/latest/meta-data", max_bytes=1024)
    assert sent_requests == []


# -- TLS: the pinned request still verifies the certificate against the name --------


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, Path]]:
    """An https server on 127.0.0.1 whose certificate names local.test only."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "local.test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("local.test")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    folder = tmp_path_factory.mktemp("tls")
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_path, key_path)
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd.server_address[1], cert_path
    httpd.shutdown()
    httpd.server_close()


async def test_pinned_https_verifies_the_host_name(tls_server: tuple[int, Path]) -> None:
    port, cert_path = tls_server
    pol = policy(["127.0.0.1"])
    url = f"https://local.test:{port}/host"
    request_url, headers, extensions = pinned_request_args(pol.check(url), url)
    trust = ssl.create_default_context(cafile=str(cert_path))
    async with httpx.AsyncClient(verify=trust, **pol.client_kwargs()) as client:
        response = await client.get(request_url, headers=headers, extensions=extensions)
        assert response.text == f"local.test:{port}"
        # Without the server name, TLS checks the IP, which the certificate does not name.
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            await client.get(request_url, headers=headers)

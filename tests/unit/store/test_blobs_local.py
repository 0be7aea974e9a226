"""LocalBlobStore and UrlSigner: files under a directory, signed ingress URLs."""

from __future__ import annotations

import threading
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import pytest

from visionserve.errors import BadRequest, Conflict, Forbidden, NotFound
from visionserve.settings import Settings
from visionserve.store.blobs import (
    BlobStore,
    LocalBlobStore,
    S3BlobStore,
    UrlSigner,
    make_blob_store,
)

KEY = b"test-signing-key"
PUBLIC = "https://vision.example.com/"


class Clock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def signer(clock: Clock) -> UrlSigner:
    return UrlSigner(KEY, PUBLIC, clock=clock)


@pytest.fixture
def store(tmp_path: Path, signer: UrlSigner) -> LocalBlobStore:
    return LocalBlobStore(tmp_path / "blobs", signer, url_expiry_s=600)


def _parts(url: str) -> tuple[str, str, str]:
    """(key, expires, sig) as the ingress would read them from the URL."""
    split = urlsplit(url)
    query = parse_qs(split.query)
    key = unquote(split.path.removeprefix("/blobs/"))
    return key, query["expires"][0], query["sig"][0]


def test_is_a_blob_store(store: LocalBlobStore) -> None:
    assert isinstance(store, BlobStore)


def test_put_get_exists_delete(store: LocalBlobStore) -> None:
    assert not store.exists("results/a.png")
    store.put("results/a.png", b"\x89PNG data", "image/png")
    assert store.exists("results/a.png")
    assert store.get("results/a.png") == b"\x89PNG data"
    assert store.content_type("results/a.png") == "image/png"

    store.delete("results/a.png")
    assert not store.exists("results/a.png")
    with pytest.raises(NotFound):
        store.get("results/a.png")
    store.delete("results/a.png")  # absent: no error
    # Empty directories are pruned, the root stays.
    assert list(store.root.iterdir()) == []


def test_get_missing_raises_not_found(store: LocalBlobStore) -> None:
    with pytest.raises(NotFound) as info:
        store.get("nope/missing.bin")
    assert info.value.status == 404
    with pytest.raises(NotFound):
        store.content_type("nope/missing.bin")


def test_content_type_guessed_without_sidecar(store: LocalBlobStore) -> None:
    store.put("a.jpg", b"x")
    assert store.content_type("a.jpg") == "image/jpeg"
    store.put("a.bin.unknownext", b"x")
    assert store.content_type("a.bin.unknownext") is None


def test_overwrite_replaces_content_type(store: LocalBlobStore) -> None:
    store.put("k", b"1", "text/plain")
    store.put("k", b"2")
    assert store.get("k") == b"2"
    assert store.content_type("k") is None


def test_list_and_delete_prefix(store: LocalBlobStore) -> None:
    keys = [f"jobs/j1/out-{i}.png" for i in range(5)] + ["jobs/j2/out.png", "jobs/j10/x"]
    for key in keys:
        store.put(key, key.encode(), "image/png")
    store.put("uploads/u.png", b"u")

    assert store.list("jobs/j1/") == sorted(keys[:5])
    # A plain string prefix, as in S3: "jobs/j1" also matches "jobs/j10/...".
    assert store.list("jobs/j1") == sorted([*keys[:5], "jobs/j10/x"])
    assert store.list("job") == sorted(keys)
    assert store.list("") == sorted([*keys, "uploads/u.png"])
    assert store.list("missing/") == []

    assert store.delete_prefix("jobs/j1/") == 5
    assert store.list("jobs/") == ["jobs/j10/x", "jobs/j2/out.png"]
    assert not (store.root / "jobs" / "j1").exists()  # pruned, sidecars included
    assert store.delete_prefix("jobs/") == 2
    assert store.delete_prefix("jobs/") == 0
    assert store.list("") == ["uploads/u.png"]


def test_delete_prefix_refuses_empty_prefix(store: LocalBlobStore) -> None:
    store.put("a", b"a")
    with pytest.raises(BadRequest):
        store.delete_prefix("")
    assert store.exists("a")


def test_list_hides_sidecars_and_temp_files(store: LocalBlobStore) -> None:
    store.put("d/a.png", b"a", "image/png")
    (store.root / "d" / ".b.png.abc.tmp").write_bytes(b"partial")
    assert store.list("") == ["d/a.png"]


@pytest.mark.parametrize(
    "key",
    [
        "",
        "/etc/passwd",
        "../escape",
        "a/../../escape",
        "a/./b",
        "a\\b",
        "a//b",
        "a/",
        "a/b\x00c",
        ".hidden",
        "a/.b.ctype",
    ],
)
def test_bad_keys_rejected(store: LocalBlobStore, key: str) -> None:
    for call in (
        lambda: store.put(key, b"x"),
        lambda: store.get(key),
        lambda: store.exists(key),
        lambda: store.delete(key),
        lambda: store.url(key),
    ):
        with pytest.raises(BadRequest):
            call()
    assert list(store.root.parent.glob("**/escape")) == []


@pytest.mark.parametrize("prefix", ["/abs", "../x", "a/../b", "a\\b", "a//"])
def test_bad_prefixes_rejected(store: LocalBlobStore, prefix: str) -> None:
    with pytest.raises(BadRequest):
        store.list(prefix)
    with pytest.raises(BadRequest):
        store.delete_prefix(prefix)


def test_file_and_prefix_clash_is_conflict(store: LocalBlobStore) -> None:
    store.put("a", b"file")
    with pytest.raises(Conflict):
        store.put("a/b", b"x")
    store.put("d/e", b"x")
    with pytest.raises(Conflict):
        store.put("d", b"x")
    assert store.get("a") == b"file"


def test_overwrite_is_atomic(store: LocalBlobStore, monkeypatch: pytest.MonkeyPatch) -> None:
    store.put("k.bin", b"old")

    # A write that dies half-way leaves the old blob intact and no temp file behind.
    def boom(src: object, dst: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr("visionserve.store.blobs.os.replace", boom)
    with pytest.raises(OSError):
        store.put("k.bin", b"new")
    monkeypatch.undo()
    assert store.get("k.bin") == b"old"
    assert sorted(p.name for p in store.root.iterdir()) == ["k.bin"]


def test_concurrent_overwrites_never_expose_partial_data(store: LocalBlobStore) -> None:
    blobs = [bytes([i]) * 200_000 for i in range(4)]
    store.put("hot", blobs[0])
    stop = threading.Event()
    seen: list[bytes] = []

    def reader() -> None:
        while not stop.is_set():
            seen.append(store.get("hot"))

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for _ in range(20):
            for blob in blobs:
                store.put("hot", blob)
    finally:
        stop.set()
        thread.join()
    assert seen
    assert all(data in blobs for data in seen)


def test_signed_url_shape_and_verify(
    store: LocalBlobStore, signer: UrlSigner, clock: Clock
) -> None:
    store.put("results/a b.png", b"x")
    url = store.url("results/a b.png")
    assert url.startswith("https://vision.example.com/blobs/results/a%20b.png?expires=")
    key, expires, sig = _parts(url)
    assert key == "results/a b.png"
    assert int(expires) == int(clock.now) + 600  # the store's default expiry
    signer.verify(key, expires, sig)

    _, expires, _ = _parts(store.url("results/a b.png", expires_in=5))
    assert int(expires) == int(clock.now) + 5


def test_tampered_signature_forbidden(signer: UrlSigner) -> None:
    key, expires, sig = _parts(signer.sign("a.png", 60))
    flipped = ("0" if sig[0] != "0" else "1") + sig[1:]
    for bad in (flipped, sig[:-1], "", "é" * 64, sig.upper()):
        with pytest.raises(Forbidden):
            signer.verify(key, expires, bad)


def test_tampered_expiry_forbidden(signer: UrlSigner) -> None:
    key, expires, sig = _parts(signer.sign("a.png", 60))
    with pytest.raises(Forbidden):
        signer.verify(key, int(expires) + 3600, sig)
    with pytest.raises(Forbidden):
        signer.verify(key, "not-a-number", sig)


def test_signature_for_other_key_forbidden(signer: UrlSigner) -> None:
    _, expires, sig = _parts(signer.sign("a.png", 60))
    with pytest.raises(Forbidden):
        signer.verify("b.png", expires, sig)


def test_other_signing_key_forbidden(signer: UrlSigner, clock: Clock) -> None:
    key, expires, sig = _parts(signer.sign("a.png", 60))
    with pytest.raises(Forbidden):
        UrlSigner(b"another-key", PUBLIC, clock=clock).verify(key, expires, sig)


def test_expired_url_forbidden(signer: UrlSigner, clock: Clock) -> None:
    key, expires, sig = _parts(signer.sign("a.png", 60))
    clock.now += 60
    signer.verify(key, expires, sig)  # valid through its last second
    clock.now += 1
    with pytest.raises(Forbidden) as info:
        signer.verify(key, expires, sig)
    assert info.value.status == 403
    assert "expired" in info.value.message


def test_non_positive_expiry_rejected(signer: UrlSigner) -> None:
    with pytest.raises(ValueError):
        signer.sign("a.png", 0)


def test_make_blob_store_local(tmp_path: Path) -> None:
    settings = Settings(
        home=tmp_path,
        secret_key="s3cret",
        public_url="http://localhost:9000",
        blobs={"url_expiry_s": 120},
    )
    store = make_blob_store(settings)
    assert isinstance(store, LocalBlobStore)
    assert store.root == tmp_path.resolve() / "blobs"
    store.put("x/y.txt", b"hello", "text/plain")
    key, expires, sig = _parts(store.url("x/y.txt"))
    UrlSigner(b"s3cret", "http://localhost:9000").verify(key, expires, sig)


def test_make_blob_store_s3(tmp_path: Path) -> None:
    settings = Settings(
        home=tmp_path,
        blobs={"backend": "s3", "s3": {"endpoint_url": "http://127.0.0.1:1", "bucket": "b"}},
    )
    store = make_blob_store(settings)  # create_bucket is off: no request is made
    assert isinstance(store, S3BlobStore)
    assert store.bucket == "b"

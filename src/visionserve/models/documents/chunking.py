"""Segments → chunks: greedy packing in reading order, along chunkr's rules.

- Segments are never split or cut. A segment whose text alone exceeds the target
  becomes a chunk of its own, whose ``chunk_length`` is its real length; every
  chunk holding more than one segment is within the target.
- No segment is dropped, except page headers and footers when
  ``ignore_headers_and_footers`` is set. Kept headers and footers are chunks of
  their own, so page furniture does not interrupt the text around it.
- A Title or SectionHeader starts a new chunk, unless the chunk so far ends with a
  heading of the same or a higher rank: "Title, SectionHeader, Text" stays one
  chunk, a SectionHeader after text or a Title after a SectionHeader starts one.
- A Caption and the Picture or Table next to it move together when the pair
  does not fit in the current chunk (a caption before an asset binds to it
  first: in "Table, Caption, Picture" the caption goes with the picture).
- ``chunk_length`` is the token count of the chunk's embed text: the segments'
  texts (markdown, else text) joined by newlines, the same text a caller embeds.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from visionserve.models.documents.tokenizers import Tokenizer
from visionserve.models.documents.types import Chunk, Segment, SegmentType

DEFAULT_TARGET_LENGTH = 512  # chunkr's default target_length

EmbedText = Callable[[Segment], str]

_HEADING_RANK = {SegmentType.TITLE: 2, SegmentType.SECTION_HEADER: 1}
_PAGE_FURNITURE = frozenset({SegmentType.PAGE_HEADER, SegmentType.PAGE_FOOTER})
_ASSETS = frozenset({SegmentType.PICTURE, SegmentType.TABLE})


def segment_embed_text(segment: Segment) -> str:
    """A segment's text for embedding and counting: its markdown, else its text."""
    return segment.markdown or segment.text


def chunk_text(segments: Sequence[Segment], embed_text: EmbedText | None = None) -> str:
    """The embed text of a chunk: its segments' non-blank texts joined by newlines.

    Args:
        segments: The chunk's segments, in order.
        embed_text: The text of one segment (default :func:`segment_embed_text`).

    Returns:
        The text whose token count is the chunk's ``chunk_length``.
    """
    text_of = embed_text or segment_embed_text
    return "\n".join(t for t in map(text_of, segments) if t.strip())


def chunk_segments(
    segments: list[Segment],
    *,
    target_length: int | None,
    tokenizer: Tokenizer,
    ignore_headers_and_footers: bool,
    embed_text: EmbedText | None = None,
) -> list[Chunk]:
    """Pack segments, in reading order, into chunks of at most ``target_length`` tokens.

    Args:
        segments: All segments of the document, in reading order.
        target_length: Target tokens per chunk; 0 or None means chunkr's default, 512.
        tokenizer: Counts tokens (see :func:`~.tokenizers.get_tokenizer`).
        ignore_headers_and_footers: Drop PageHeader and PageFooter segments.
        embed_text: The text of one segment (default :func:`segment_embed_text`).

    Returns:
        The chunks, each with a fresh uuid4 ``chunk_id`` and ``embed`` unset. Apart
        from the ids, the result depends only on the arguments.
    """
    target = target_length if target_length and target_length > 0 else DEFAULT_TARGET_LENGTH
    kept = [
        s
        for s in segments
        if not (ignore_headers_and_footers and s.segment_type in _PAGE_FURNITURE)
    ]
    packer = _Packer(target, tokenizer, embed_text or segment_embed_text)
    for unit in _units(kept):
        packer.add(unit)
    return packer.finish()


def _units(segments: list[Segment]) -> list[list[Segment]]:
    """Group segments into what packing moves as one: a caption-asset pair or one segment."""
    units: list[list[Segment]] = []
    i = 0
    while i < len(segments):
        pair = segments[i : i + 2]
        after = segments[i + 2] if i + 2 < len(segments) else None
        if len(pair) == 2 and _is_pair(pair[0], pair[1], after):
            units.append(pair)
            i += 2
        else:
            units.append([segments[i]])
            i += 1
    return units


def _is_pair(first: Segment, second: Segment, after: Segment | None) -> bool:
    a, b = first.segment_type, second.segment_type
    if a == SegmentType.CAPTION and b in _ASSETS:
        return True
    # An asset's trailing caption yields to a following asset the caption precedes.
    caption_leads_next = after is not None and after.segment_type in _ASSETS
    return a in _ASSETS and b == SegmentType.CAPTION and not caption_leads_next


@dataclass
class _Packer:
    target: int
    tokenizer: Tokenizer
    embed_text: EmbedText
    chunks: list[Chunk] = field(default_factory=list)
    current: list[Segment] = field(default_factory=list)
    current_length: int = 0  # exact token count of chunk_text(current)

    def add(self, unit: list[Segment]) -> None:
        kind = unit[0].segment_type
        if kind in _PAGE_FURNITURE:
            self.flush()
            self._fit(unit)
            self.flush()
            return
        rank = _HEADING_RANK.get(kind, 0)
        if rank and self.current and rank > _HEADING_RANK.get(self.current[-1].segment_type, 0):
            self.flush()
        self._fit(unit)

    def _fit(self, unit: list[Segment]) -> None:
        length = self._length(self.current + unit)
        if self.current and length > self.target:
            self.flush()
            length = self._length(unit)
        if length <= self.target or len(unit) == 1:
            self.current += unit
            self.current_length = length
            if length > self.target:
                self.flush()  # an oversized segment shares its chunk with nothing
            return
        for segment in unit:  # a pair too long even on its own: place it piece by piece
            self._fit([segment])

    def _length(self, segments: list[Segment]) -> int:
        # Counted on the joined text, not summed per segment: subword tokenizers
        # do not count a concatenation as the sum of its parts.
        return self.tokenizer.count(chunk_text(segments, self.embed_text)) if segments else 0

    def flush(self) -> None:
        if self.current:
            self.chunks.append(
                Chunk(
                    chunk_id=str(uuid.uuid4()),
                    chunk_length=self.current_length,
                    segments=self.current,
                )
            )
        self.current = []
        self.current_length = 0

    def finish(self) -> list[Chunk]:
        self.flush()
        return self.chunks

"""A documents task's configuration, typed once for every reader (contract: chunkr-api.md).

The task API validates it at creation and update, stores ``model_dump(mode="json")``,
and the worker re-validates the stored dict before the graph runs; every stage (page
rendering, OCR, segmentation, segment processing, the LLM, chunking) then reads this
one object. The defaults live here and nowhere else: a segment type's resolved options
come from :meth:`SegmentProcessing.options`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    RootModel,
    ValidationError,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from visionserve.errors import BadRequest
from visionserve.models.documents.types import SegmentType

OcrStrategy = Literal["All", "Auto"]
SegmentationStrategy = Literal["LayoutAnalysis", "Page"]
ErrorHandling = Literal["Fail", "Continue"]
EmbedSource = Literal["Content", "HTML", "Markdown", "LLM"]
SegmentKey = Literal[
    "title",
    "section_header",
    "text",
    "list_item",
    "table",
    "picture",
    "caption",
    "formula",
    "footnote",
    "page_header",
    "page_footer",
    "page",
]

# The contract's snake_case key of each segment type (``SectionHeader`` → ``section_header``).
SEGMENT_KEYS: dict[SegmentType, SegmentKey] = {
    SegmentType.TITLE: "title",
    SegmentType.SECTION_HEADER: "section_header",
    SegmentType.TEXT: "text",
    SegmentType.LIST_ITEM: "list_item",
    SegmentType.TABLE: "table",
    SegmentType.PICTURE: "picture",
    SegmentType.CAPTION: "caption",
    SegmentType.FORMULA: "formula",
    SegmentType.FOOTNOTE: "footnote",
    SegmentType.PAGE_HEADER: "page_header",
    SegmentType.PAGE_FOOTER: "page_footer",
    SegmentType.PAGE: "page",
}
# Any spelling of a type (``SectionHeader``, ``section_header``, ``sectionheader``) → its key.
_KEY_OF = {t.value.lower(): key for t, key in SEGMENT_KEYS.items()}
_EMBED_SOURCES: dict[str, EmbedSource] = {
    "content": "Content",
    "html": "HTML",
    "markdown": "Markdown",
    "llm": "LLM",
}


@dataclass(frozen=True)
class SegmentOptions:
    """One segment type's resolved ``segment_processing`` options, defaults applied.

    Attributes:
        format: Which rendering is the segment's primary content.
        strategy: ``Auto`` (rules), ``LLM`` (the LLM fills ``Segment.llm``) or ``Ignore``
            (the segment stays but contributes no HTML/Markdown to its chunk's embed text).
        crop_image: ``All`` always crops the segment's image; ``Auto`` only when needed
            (pictures, and LLM generation which looks at the crop).
        embed_sources: Segment fields joined into the chunk's embed text.
        llm: A custom LLM prompt (legacy ``llm`` field), or None.
        html_llm: The legacy ``html`` field asked for LLM generation.
        markdown_llm: The legacy ``markdown`` field asked for LLM generation.
    """

    format: Literal["Html", "Markdown"] = "Markdown"
    strategy: Literal["Auto", "LLM", "Ignore"] = "Auto"
    crop_image: Literal["All", "Auto"] = "Auto"
    embed_sources: tuple[EmbedSource, ...] = ("Markdown",)
    llm: str | None = None
    html_llm: bool = False
    markdown_llm: bool = False

    @property
    def needs_llm(self) -> bool:
        """The configuration asks the LLM for this segment type (any of the four ways)."""
        return self.strategy == "LLM" or self.html_llm or self.markdown_llm or bool(self.llm)


def _tokenizer_name(value: Any) -> Any:
    """The name in chunkr-ai's ``{"Enum": "Word"}`` / ``{"String": "<name>"}`` forms."""
    if isinstance(value, dict) and len(value) == 1:
        ((kind, name),) = value.items()
        if kind in ("Enum", "String"):
            return name
    return value


_NAME = {"type": "string", "maxLength": 200}
# A tokenizer name: a plain string, or as the chunkr-ai SDK serialises it (its Rust
# server's externally tagged enum). Stored, echoed and read as the plain name.
TokenizerName = Annotated[
    str,
    BeforeValidator(_tokenizer_name),
    WithJsonSchema(
        {
            "anyOf": [
                _NAME,
                {
                    "type": "object",
                    "properties": {"Enum": _NAME},
                    "required": ["Enum"],
                    "additionalProperties": False,
                },
                {
                    "type": "object",
                    "properties": {"String": _NAME},
                    "required": ["String"],
                    "additionalProperties": False,
                },
            ]
        },
        mode="validation",
    ),
]


class ChunkProcessing(BaseModel):
    model_config = ConfigDict(extra="allow")

    target_length: int = Field(512, ge=0, le=100_000, description="0 means the default, 512")
    tokenizer: TokenizerName = Field(
        "Word",
        max_length=200,
        description=(
            "Word, Cl100kBase, XlmRobertaBase, BertBaseUncased or a Hugging Face model name "
            "whose tokenizer.json is in <model_home>/tokenizers/<name>/; also accepted as "
            '{"Enum": "<name>"} or {"String": "<name>"}, as the chunkr-ai SDK sends it'
        ),
    )
    ignore_headers_and_footers: bool = True
    embeddings: bool = Field(False, description="Also compute all-MiniLM-L6-v2 vectors")


class SegmentProcessingConfig(BaseModel):
    """chunkr's options for one segment type, in both its legacy and newer forms.

    Unknown keys are kept (and echoed back) but change nothing.
    """

    model_config = ConfigDict(extra="allow")

    html: Literal["Auto", "LLM"] | None = None
    markdown: Literal["Auto", "LLM"] | None = None
    crop_image: Literal["All", "Auto"] | None = None
    strategy: Literal["Auto", "LLM", "Ignore"] | None = None
    format: Literal["Html", "Markdown"] | None = None
    llm: str | None = None
    embed_sources: list[EmbedSource] | None = Field(
        None, description="Content, HTML, Markdown and/or LLM (any letter case)"
    )

    @field_validator("embed_sources", mode="before")
    @classmethod
    def _embed_source_names(cls, value: Any) -> Any:
        if isinstance(value, list | tuple):
            return [_EMBED_SOURCES.get(v.lower(), v) if isinstance(v, str) else v for v in value]
        return value

    def options(self, seg_type: SegmentType) -> SegmentOptions:
        """These options with the defaults of ``seg_type`` filled in."""
        crop_image = self.crop_image or ("All" if seg_type == SegmentType.PICTURE else "Auto")
        if self.strategy is not None:
            strategy = self.strategy
        else:
            strategy = "LLM" if "LLM" in (self.html, self.markdown) else "Auto"
        if self.format is not None:
            fmt = self.format
        else:
            fmt = "Html" if self.html is not None and self.markdown is None else "Markdown"
        embed: tuple[EmbedSource, ...] = (
            tuple(self.embed_sources)
            if self.embed_sources is not None
            else ("HTML",)
            if fmt == "Html"
            else ("Markdown",)
        )
        if strategy == "Ignore":  # drops the rendered forms only
            embed = tuple(s for s in embed if s not in ("HTML", "Markdown"))
        return SegmentOptions(
            format=fmt,
            strategy=strategy,
            crop_image=crop_image,
            embed_sources=embed,
            llm=self.llm,
            html_llm=self.html == "LLM",
            markdown_llm=self.markdown == "LLM",
        )


class SegmentProcessing(RootModel[dict[SegmentKey, SegmentProcessingConfig]]):
    """``segment_processing``: options per segment type, keyed by the contract's snake_case.

    A key may also be spelled as the type's name (``SectionHeader``): both mean the same
    type and are stored as ``section_header``. Keys naming no segment type are dropped;
    one type given twice is refused.
    """

    root: dict[SegmentKey, SegmentProcessingConfig] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _type_keys(cls, value: Any) -> Any:
        if isinstance(value, RootModel):
            value = value.root
        if not isinstance(value, dict):
            return value
        keys: dict[str, Any] = {}
        for name, options in value.items():
            key = _KEY_OF.get(str(name).replace("_", "").lower())
            if key is None:
                continue
            if key in keys:
                raise ValueError(f"segment type {key} is given twice")
            keys[key] = options
        return keys

    def options(self, seg_type: SegmentType) -> SegmentOptions:
        """The resolved options of one segment type (its defaults when not configured)."""
        return self.root.get(SEGMENT_KEYS[seg_type], _NO_OPTIONS).options(seg_type)


_NO_OPTIONS = SegmentProcessingConfig()


class LlmProcessing(BaseModel):
    model_config = ConfigDict(extra="allow")

    model_id: str | None = None
    fallback_strategy: Any = None
    max_completion_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2)


class Configuration(BaseModel):
    """Everything that decides a task's output; PATCH compares these."""

    model_config = ConfigDict(extra="ignore")

    chunk_processing: ChunkProcessing = Field(default_factory=ChunkProcessing)
    expires_in: int | None = Field(None, ge=1, le=10 * 365 * 24 * 3600)
    high_resolution: bool = False
    ocr_strategy: OcrStrategy = "All"
    segmentation_strategy: SegmentationStrategy = "LayoutAnalysis"
    segment_processing: SegmentProcessing = Field(default_factory=SegmentProcessing)
    error_handling: ErrorHandling = "Fail"
    llm_processing: LlmProcessing | None = None


M = TypeVar("M", bound=BaseModel)


def validated(model: type[M], value: Any) -> M:
    """``model.model_validate(value)``, where a refusal is a :class:`BadRequest`.

    For values that did not come through the API's own validation (a stored task's
    configuration, a batch job's JSON): the message names the first bad field.
    """
    try:
        return model.model_validate(value if value is not None else {})
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise BadRequest(f"{where}: {first['msg']}" if where else first["msg"]) from exc

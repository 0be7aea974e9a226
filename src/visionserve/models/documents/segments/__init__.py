"""Page → segments, in the chunkr contract's terms (Ray-free).

Two sources of structure are merged:

* the PDF's own text layer (``Page.spans``: exact text and font sizes) and table
  finder (``Page.tables``), trusted first where they exist;
* the layout detector's regions (:class:`~visionserve.models.documents.layout.LayoutModel`),
  used for what the text layer cannot say (pictures, captions, formulas, header and
  footer bands) and, on pages without a text layer, as the frame the OCR words
  (``Page.words``) are poured into.

Every word of the page ends up in exactly one segment: lines no rule claims become
``Text``, and words OCR read in images the text layer lacks (a logo's name, a chart's
labels) join the picture they lie in or become ``Text`` of their own. Segments come
back in reading order (columns left to right, each top to bottom; full-width blocks
such as titles split the flow), page headers first and page footers last.

Typical use::

    style = document_style(pages)
    for page in pages:
        segments = build_segments(page, detector.detect(page.image), strategy="LayoutAnalysis",
                                  id_prefix=f"{task_id}-p{page.number}", style=style)

The package, one job per module, in the order a page goes through them:

* :mod:`.lines`: text-layer spans or OCR words grouped into lines;
* :mod:`.style`: document-wide body/title sizes and running headers;
* :mod:`.regions`: tables and pictures (the PDF's table finder merged with the detector);
* :mod:`.classification`: the type of every other line, block by block;
* :mod:`.reading_order`: headers, columns by XY-cut, footers;
* :mod:`.rendering`: text, HTML and Markdown per type, cropped images;
* :mod:`.processing`: what each type's ``segment_processing`` asks (crops, LLM, embed text);
* :mod:`.build`: the steps above for one page.
"""

from visionserve.models.documents.segments.build import SegmentationStrategy, build_segments
from visionserve.models.documents.segments.processing import (
    SegmentPlan,
    apply_segment_processing,
    drop_headers_footers,
)
from visionserve.models.documents.segments.rendering import attach_image, crop
from visionserve.models.documents.segments.style import DocumentStyle, document_style

__all__ = [
    "DocumentStyle",
    "SegmentPlan",
    "SegmentationStrategy",
    "apply_segment_processing",
    "attach_image",
    "build_segments",
    "crop",
    "document_style",
    "drop_headers_footers",
]

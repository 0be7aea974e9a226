"""The web console: static pages served at ``/ui/`` that call the surfaces' public APIs.

Plain HTML, CSS and ES modules committed under ``static/`` (pdf.js vendored under
``static/vendor/``): nothing is built at run time and no private endpoint exists for
it. The ingress mounts ``STATIC_DIR`` (see ``visionserve.api.app``).
"""

from __future__ import annotations

from pathlib import Path

STATIC_DIR = Path(__file__).parent / "static"

#: The console's pages, in the order of its navigation: (file, title).
PAGES = (
    ("cutout.html", "Cutout"),
    ("documents.html", "Documents"),
    ("extract.html", "Extract"),
    ("inspect.html", "Inspect"),
    ("edit.html", "Edit"),
)

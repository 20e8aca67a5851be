"""``imagelog view``: a local web viewer for a run, fast at a million frames, following a live run.

Needs the ``view`` extra (``pip install "imagelog[view]"``). ``Viewer(run).start()`` serves in a
background thread; ``imagelog view RUN`` serves until Ctrl-C. See docs/viewer.md.
"""

from __future__ import annotations

from .index import Filters, LiveIndex
from .server import Viewer

__all__ = ["Filters", "LiveIndex", "Viewer"]

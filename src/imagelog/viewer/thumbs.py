"""Display conversion and the on-disk thumbnail cache (outside the run, bounded in bytes).

Browsers cannot show JPEG XL (Chrome, Firefox), TIFF, 16-bit, float or ``.npy`` frames, so the
server decodes them with imagelog's codecs and sends 8-bit JPEG or PNG; the stored file is never
touched. 16-bit and float frames are mapped to 8 bits through a window (``lo``..``hi``: by default
the 0.5th..99.5th percentile of the frame).
"""

from __future__ import annotations

import hashlib
import io
import os
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["ThumbnailCache", "default_cache_dir", "encode_display", "to_display", "value_range"]

#: Thumbnails are at most this many pixels on their longer side.
THUMB_SIZE = 256
#: Formats a browser shows as stored when they hold 8-bit pixels.
BROWSER_FORMATS = {"jpeg", "png", "webp"}


def default_cache_dir() -> Path:
    """``$IMAGELOG_CACHE_DIR``, else ``$XDG_CACHE_HOME/imagelog``, else ``~/.cache/imagelog``."""
    env = os.environ.get("IMAGELOG_CACHE_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "imagelog"


def value_range(arr: np.ndarray[Any, Any]) -> tuple[float, float]:
    """The 0.5th and 99.5th percentiles of a frame's finite values (a subsample of big frames)."""
    flat = arr.reshape(-1)
    if flat.size > 1_000_000:
        flat = flat[:: flat.size // 1_000_000]
    flat = flat[np.isfinite(flat)] if flat.dtype.kind == "f" else flat
    if not flat.size:
        return 0.0, 1.0
    lo, hi = np.percentile(flat, [0.5, 99.5])
    if hi <= lo:
        lo, hi = float(flat.min()), float(flat.max())
    return float(lo), float(hi) if hi > lo else float(lo) + 1.0


def to_display(
    arr: np.ndarray[Any, Any], lo: float | None = None, hi: float | None = None
) -> np.ndarray[Any, Any]:
    """An 8-bit gray, RGB or RGBA array for display; other dtypes go through the window."""
    if arr.dtype == np.bool_:
        return arr.astype(np.uint8) * 255
    if arr.dtype != np.uint8 or lo is not None or hi is not None:
        if lo is None or hi is None:
            dlo, dhi = value_range(arr)
            lo = dlo if lo is None else lo
            hi = dhi if hi is None else hi
        scale = 255.0 / max(hi - lo, 1e-12)
        out = (np.nan_to_num(arr.astype(np.float32), nan=lo) - lo) * scale
        arr = np.clip(out, 0, 255).astype(np.uint8)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim == 3 and arr.shape[2] == 2:  # gray + alpha
        arr = arr[:, :, 0]
    return arr


def encode_display(arr: np.ndarray[Any, Any], *, fmt: str = "png", max_side: int = 0) -> bytes:
    """Encode an 8-bit display array as PNG or JPEG, shrunk to ``max_side`` if given."""
    from PIL import Image

    im = Image.fromarray(arr)
    if max_side:
        im.thumbnail((max_side, max_side), Image.Resampling.BILINEAR)
    out = io.BytesIO()
    if fmt == "jpeg":
        im.convert("RGB").save(out, "JPEG", quality=80)
    else:
        im.save(out, "PNG", compress_level=1)
    return out.getvalue()


class ThumbnailCache:
    """JPEG thumbnails made on demand in a thread pool, kept as files under ``root``.

    A thumbnail's name is a hash of the run, the image's path and size, so records that share
    a file share its thumbnail. ``max_bytes`` bounds the folder: past it, the least recently
    written thumbnails go (down to 80%). A thumbnail deleted from the folder is simply made
    again. Concurrent requests for one thumbnail make it once.
    """

    def __init__(
        self, root: Path, *, max_bytes: int = 512 * 2**20, workers: int | None = None
    ) -> None:
        self.root = root
        self.max_bytes = max_bytes
        self.root.mkdir(parents=True, exist_ok=True)
        self._pool = ThreadPoolExecutor(
            max_workers=workers or min(8, os.cpu_count() or 2), thread_name_prefix="imagelog-thumb"
        )
        self._lock = threading.Lock()
        self._pending: dict[str, Future[Path]] = {}
        self._bytes = sum(p.stat().st_size for p in self.root.glob("*/*.jpg"))
        self.made = 0
        """Thumbnails made (not found in the cache) since start."""

    def key(self, run_url: str, path: str, size: int) -> Path:
        """Where the thumbnail of ``path`` (``size`` bytes) in run ``run_url`` is kept."""
        digest = hashlib.sha256(f"{run_url}\0{path}\0{size}\0{THUMB_SIZE}".encode()).hexdigest()
        return self.root / digest[:2] / f"{digest[2:]}.jpg"

    def get(self, target: Path, make: Callable[[], bytes]) -> Future[Path]:
        """A future for the thumbnail file at ``target``, made with ``make()`` if missing."""
        done: Future[Path] = Future()
        if target.exists():
            done.set_result(target)
            return done
        name = str(target)
        with self._lock:
            fut = self._pending.get(name)
            if fut is None:
                fut = self._pending[name] = self._pool.submit(self._make, target, make)
        return fut

    def _make(self, target: Path, make: Callable[[], bytes]) -> Path:
        try:
            data = make()
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_suffix(f".{threading.get_ident()}.tmp")
            tmp.write_bytes(data)
            os.replace(tmp, target)
            with self._lock:
                self._bytes += len(data)
                self.made += 1
                over = self._bytes > self.max_bytes
            if over:
                self._evict()
            return target
        finally:
            with self._lock:
                self._pending.pop(str(target), None)

    def _evict(self) -> None:
        files = []
        for p in self.root.glob("*/*.jpg"):
            try:
                st = p.stat()
            except FileNotFoundError:
                continue
            files.append((st.st_mtime, st.st_size, p))
        files.sort()
        total = sum(size for _, size, _ in files)
        for _, size, p in files:
            if total <= self.max_bytes * 0.8:
                break
            p.unlink(missing_ok=True)
            total -= size
        with self._lock:
            self._bytes = total

    def close(self) -> None:
        """Stop the workers (thumbnails being made are finished)."""
        self._pool.shutdown(wait=True, cancel_futures=True)

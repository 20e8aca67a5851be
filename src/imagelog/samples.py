"""Camera-like frames from the bundled public-domain photos, for the demo, benchmarks and tests.

A simulated camera pans slowly across a photo mosaic and adds a little sensor noise, so frames
compress like real footage (random pixels would not, and would measure nothing).
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from importlib import resources
from typing import Any

import numpy as np

__all__ = ["PHOTOS", "CameraSimulator", "depth_frame", "photo", "scene"]

PHOTOS = ("astronaut.png", "coffee.png", "chelsea.png", "rocket.jpg", "camera.png")


@functools.lru_cache(maxsize=8)
def photo(name: str) -> np.ndarray[Any, Any]:
    """One bundled photo as an RGB uint8 array (read-only)."""
    from PIL import Image

    with resources.files("imagelog").joinpath("_samples", name).open("rb") as fh:
        arr = np.asarray(Image.open(fh).convert("RGB"))
    arr.setflags(write=False)
    return arr


@functools.lru_cache(maxsize=8)
def scene(width: int, height: int) -> np.ndarray[Any, Any]:
    """A photo mosaic a little larger than ``width`` x ``height`` (room to pan), read-only."""
    from PIL import Image

    tiles = [photo(n) for n in PHOTOS[:4]]
    tile_h = max(64, (height + 64) // 2)
    tile_w = max(64, (width + 128) // 2)
    rows = []
    for r in range(2):
        row = []
        for c in range(2):
            t = tiles[(r * 2 + c) % len(tiles)]
            row.append(
                np.asarray(Image.fromarray(t).resize((tile_w, tile_h), Image.Resampling.BILINEAR))
            )
        rows.append(np.hstack(row))
    out = np.ascontiguousarray(np.vstack(rows))
    out.setflags(write=False)
    return out


class CameraSimulator:
    """Frames from a camera panning across a scene, with sensor noise; deterministic per seed.

    >>> cam = CameraSimulator(64, 48, seed=1)
    >>> frame = next(iter(cam)); frame.shape, frame.dtype.name
    ((48, 64, 3), 'uint8')
    """

    def __init__(
        self, width: int = 1920, height: int = 1080, *, noise: float = 2.0, seed: int = 0
    ) -> None:
        self.width, self.height = width, height
        self.noise = noise
        self._scene = scene(width, height)
        self._rng = np.random.default_rng(seed)
        self._t = 0
        # a small bank of noise fields, reused, so generating a frame is cheap
        self._noise = [
            self._rng.normal(0, noise, (height, width, 3)).astype(np.int16) for _ in range(4)
        ] if noise > 0 else []  # fmt: skip

    def frame(self) -> np.ndarray[Any, Any]:
        """The next frame (a new array)."""
        sh, sw = self._scene.shape[:2]
        span_x, span_y = sw - self.width, sh - self.height
        x = int(abs((self._t * 3) % (2 * span_x) - span_x)) if span_x else 0
        y = int(abs((self._t * 1) % (2 * span_y) - span_y)) if span_y else 0
        view = self._scene[y : y + self.height, x : x + self.width]
        if self._noise:
            noisy = view.astype(np.int16) + self._noise[self._t % len(self._noise)]
            out: np.ndarray[Any, Any] = np.clip(noisy, 0, 255).astype(np.uint8)
        else:
            out = view.copy()
        self._t += 1
        return out

    def __iter__(self) -> Iterator[np.ndarray[Any, Any]]:
        """Frames forever."""
        while True:
            yield self.frame()


def depth_frame(width: int = 1920, height: int = 1080) -> np.ndarray[Any, Any]:
    """A 16-bit depth-like frame: a smooth ramp shaped by a photo's luminance (millimetres)."""
    gray = scene(width, height)[:height, :width].mean(axis=2)
    ramp = np.linspace(500, 4000, width, dtype=np.float64)[None, :]
    depth: np.ndarray[Any, Any] = (ramp + gray * 8).astype(np.uint16)
    return depth

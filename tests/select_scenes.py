"""Camera sequences for the ``select=`` tests and bench, made from the bundled photographs.

A fixed camera looks at a photo (the scene) with sensor noise and a slow lighting drift; scenes
add a sudden brightness step (a light switched on) or objects (crops of other photos) that
enter, stay a while and leave. Every event is labelled with the index of its first frame.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import numpy as np
from PIL import Image

from imagelog.samples import photo

__all__ = ["Event", "Scene", "scenes"]

Array = np.ndarray[Any, Any]


@dataclasses.dataclass(frozen=True)
class Event:
    """Something a user wants stored: ``name`` starts at frame ``start``."""

    name: str
    start: int


@dataclasses.dataclass
class Scene:
    """A sequence of ``n`` frames of ``width`` x ``height`` and its labelled events."""

    name: str
    n: int
    width: int = 320
    height: int = 240
    noise: float = 3.0
    drift: float = 0.08  # the light's gain rises by this much over the sequence
    step_at: int | None = None  # the frame where a light switches on
    step_gain: float = 1.35
    step_offset: float = 12.0
    #: (photo, first frame, last frame, x, y, moving): an object on screen in [first, last]
    objects: tuple[tuple[str, int, int, int, int, bool], ...] = ()
    background: str = "coffee.png"
    seed: int = 7

    @property
    def events(self) -> list[Event]:
        """Objects entering and leaving; the step is not an event (a frame or so is allowed)."""
        out = []
        for name, first, last, *_ in self.objects:
            out.append(Event(f"{name} enters", first))
            if last + 1 < self.n:
                out.append(Event(f"{name} leaves", last + 1))
        return sorted(out, key=lambda e: e.start)

    def label(self, i: int) -> str | None:
        """The event that starts at frame ``i`` (the frame's label), if any."""
        for e in self.events:
            if e.start == i:
                return e.name
        return None

    def frames(self) -> Iterator[Array]:
        """The frames, uint8 RGB, deterministic."""
        rng = np.random.default_rng(self.seed)
        bg = _resized(self.background, self.width, self.height)
        crops = {name: _crop(name, self.width // 4, self.height // 4) for name, *_ in self.objects}
        for i in range(self.n):
            f = bg.copy()
            for name, first, last, x, y, moving in self.objects:
                if first <= i <= last:
                    c = crops[name]
                    dx = (i - first) * 3 if moving else 0
                    xx = min(self.width - c.shape[1], x + dx)
                    f[y : y + c.shape[0], xx : xx + c.shape[1]] = c
            gain = 1.0 + self.drift * i / max(1, self.n - 1)
            offset = 0.0
            if self.step_at is not None and i >= self.step_at:
                gain *= self.step_gain
                offset = self.step_offset
            f = f * np.float32(gain) + np.float32(offset)
            f += rng.normal(0.0, self.noise, f.shape).astype(np.float32)
            yield np.clip(f, 0, 255).astype(np.uint8)


def _resized(name: str, w: int, h: int) -> Array:
    img = Image.fromarray(photo(name)).resize((w, h), Image.Resampling.BILINEAR)
    return np.asarray(img).astype(np.float32)


def _crop(name: str, w: int, h: int) -> Array:
    """The middle of another photo, ``w`` x ``h``: an object that enters the scene."""
    p = photo(name)
    ph, pw = p.shape[:2]
    side = min(ph, pw) // 2
    y0, x0 = (ph - side) // 2, (pw - side) // 2
    img = Image.fromarray(p[y0 : y0 + side, x0 : x0 + side]).resize((w, h))
    return np.asarray(img).astype(np.float32)


def scenes() -> list[Scene]:
    """The sequences the tests and ``python -m bench --only select`` use."""
    return [
        Scene("static", 300),
        Scene("light switched on", 200, step_at=100),
        Scene(
            "objects enter and leave",
            300,
            objects=(
                ("chelsea.png", 40, 90, 30, 40, False),
                ("astronaut.png", 130, 170, 180, 120, False),
                ("rocket.jpg", 210, 240, 10, 150, True),
            ),
        ),
        Scene(
            "objects, then the light",
            240,
            step_at=150,
            drift=0.15,
            objects=(
                ("chelsea.png", 60, 100, 200, 30, False),
                ("camera.png", 190, 220, 60, 100, False),
            ),
        ),
    ]

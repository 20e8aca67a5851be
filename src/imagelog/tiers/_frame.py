"""One frame in a tier pass: its file's key at a step, its new file (re-encoded, maybe shrunk),
the rules a pass asks of it (kept, saved by a trigger, its current step, its log time), and its
history."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from .. import codecs
from ..errors import InvalidSetting
from ..inputs import iso_ns
from ..record import dumps, ordered
from ..retention import keeps_by_label
from ..settings import parse_duration
from ..stores.base import Store
from ._ladder import Ladder

_TIER_SUFFIX = re.compile(r"\.t\d+$")


def history(store: Store, rid: str) -> list[dict[str, Any]]:
    """Every index line that names an image id, in the order it happened: its ``logged`` record
    as written, then ``tiered``, ``thinned``, ``purged`` and ``encoding_warning`` events."""
    from ..records import iter_json, with_retry

    def rows(con: Any) -> list[Any]:
        sql = ("SELECT CAST(record AS VARCHAR) FROM _all WHERE id = ? OR (action <> 'logged' "
               "AND contains(CAST(record AS VARCHAR), ?)) ORDER BY created, id")  # fmt: skip
        return list(iter_json(con, sql, [rid, f'"{rid}"']))

    return [r for r in with_retry(store, rows) if isinstance(r, dict)]


def tier_key(key: str, step: int, ext: str) -> str:
    """The key of a frame's file at a step: ``<name>.t<step>.<ext>`` beside the original."""
    base, _, _ = key.rpartition(".")
    return f"{_TIER_SUFFIX.sub('', base)}.t{step}.{ext}"


def _created_ns(rec: Mapping[str, Any]) -> int:
    created = (rec.get("event") or {}).get("created") or rec.get("@timestamp")
    return iso_ns(str(created))


def _current_after(rec: Mapping[str, Any]) -> float:
    """The age of the step that made the frame's current file (0: as logged)."""
    tier = (rec.get("imagelog") or {}).get("tier") or {}
    after = tier.get("after")
    if after is None:
        return 0.0
    try:
        return parse_duration(after if isinstance(after, str | int | float) else str(after))
    except (InvalidSetting, TypeError):
        return 0.0


def _thumbnail_format(ladder: Ladder, index: int) -> str:
    step = ladder[index]
    if step.format is not None:
        return step.format
    for prev in reversed(ladder[:index]):
        if prev.kind == "format" and prev.format is not None:
            return prev.format
    return "preview"


def _shrink(arr: np.ndarray[Any, Any], longest: int) -> np.ndarray[Any, Any]:
    h, w = arr.shape[:2]
    scale = longest / max(h, w)
    if scale >= 1:
        return arr
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    if arr.dtype == np.uint8 and (arr.ndim == 2 or arr.shape[2] in (3, 4)):
        from PIL import Image

        return np.asarray(Image.fromarray(arr).resize(size, Image.Resampling.LANCZOS))
    rows = (np.arange(size[1]) * h / size[1]).astype(np.intp)
    cols = (np.arange(size[0]) * w / size[0]).astype(np.intp)
    return np.ascontiguousarray(arr[rows][:, cols])


_DROPPED_IMAGE = ("format", "lossless", "encoder", "pixel_format", "stride", "bit_depth", "layout")


def _reencode(
    run: Any, rec: Mapping[str, Any], spec: str, thumbnail: int | None, step: int, after: str,
    eid: str,
) -> tuple[str, bytes, dict[str, Any], dict[str, Any], str | None]:  # fmt: skip
    """The frame at a step: (key, bytes, file, image, sidecar bytes or None)."""
    image = rec.get("image") or {}
    arr = run.load(dict(rec), convert="rgb" if image.get("pixel_format") else None)
    if thumbnail is not None:
        arr = _shrink(arr, thumbnail)
    arr = np.ascontiguousarray(arr)
    channels = 1 if arr.ndim == 2 else int(arr.shape[2])
    dtype = "bool" if arr.dtype == np.bool_ else str(arr.dtype)
    codec, params = codecs.resolve(spec, dtype=dtype, channels=channels)
    new_image = {k: v for k, v in image.items() if k not in _DROPPED_IMAGE}
    new_image.update(
        width=int(arr.shape[1]), height=int(arr.shape[0]), channels=channels, dtype=dtype,
        channel_order={1: "L", 3: "RGB", 4: "RGBA"}.get(channels, image.get("channel_order", "")),
        format=codec.name, lossless=codec.is_lossless(params),
        encoder={"name": codec.library or codec.name, "version": codec.version, "params": params},
    )  # fmt: skip
    key = tier_key(str((rec.get("file") or {})["path"]), step, codec.extension)
    file = {"path": key, "mime_type": codec.mime_type, "extension": codec.extension}
    body = {k: v for k, v in rec.items() if k not in ("file", "image")}
    body["file"], body["image"] = file, new_image
    body["imagelog"] = {**(rec.get("imagelog") or {}), "tier": {"step": step, "after": after,
                                                                 "event": eid}}  # fmt: skip
    body["imagelog"].pop("sidecar", None)
    text = dumps(ordered(body))
    pixels = arr.astype(np.uint8) if dtype == "bool" and codec.name != "png" else arr
    data, embedded = codec.encode_with_record(pixels, params, text)
    return key, data, file, new_image, None if embedded else text


def _keep(rec: Mapping[str, Any], keep: Callable[[Mapping[str, Any]], bool] | None) -> bool:
    if keeps_by_label(rec):
        return True
    if keep is None:
        return False
    try:
        return bool(keep(rec))
    except Exception:
        return True  # a keep rule that raises keeps the record, as retention does


def _triggered(rec: Mapping[str, Any]) -> bool:
    return bool((rec.get("labels") or {}).get("trigger"))

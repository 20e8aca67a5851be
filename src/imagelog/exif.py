"""EXIF of camera images, parsed into the record's ``exif`` object (named tags, JSON values)."""

from __future__ import annotations

import datetime as _dt
import io
from typing import Any

__all__ = ["capture_time_ns", "read"]

#: tags worth a field in the record; the rest stay in the file, untouched.
_WANTED = (
    "Make", "Model", "Software", "DateTime", "DateTimeOriginal", "OffsetTimeOriginal",
    "SubsecTimeOriginal", "ExposureTime", "FNumber", "ISOSpeedRatings", "PhotographicSensitivity",
    "FocalLength", "Orientation", "LensModel", "BodySerialNumber", "ImageUniqueID",
)  # fmt: skip


def _json_value(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("ascii", "replace").rstrip("\x00")
    if isinstance(value, tuple):
        return [_json_value(v) for v in value]
    if isinstance(value, str | int | bool) or value is None:
        return value.rstrip("\x00") if isinstance(value, str) else value
    try:
        f = float(value)  # IFDRational and friends
    except (TypeError, ValueError, ZeroDivisionError):
        return str(value)
    return f if f == f and f not in (float("inf"), float("-inf")) else None


def read(data: bytes, fmt: str) -> dict[str, Any]:
    """Named EXIF tags of an encoded image (empty if it has none or it cannot be parsed)."""
    if fmt not in ("jpeg", "webp", "png"):
        return {}
    from PIL import ExifTags, Image

    try:
        with Image.open(io.BytesIO(data)) as im:
            raw = im.getexif()
            if not raw:
                return {}
            tags: dict[int, Any] = dict(raw)
            tags.update(raw.get_ifd(ExifTags.IFD.Exif))
    except Exception:
        return {}
    out: dict[str, Any] = {}
    for tag_id, value in tags.items():
        name = ExifTags.TAGS.get(tag_id)
        if name in _WANTED:
            out[name] = _json_value(value)
    return out


def capture_time_ns(tags: dict[str, Any]) -> int | None:
    """``DateTimeOriginal`` (+ offset and subseconds if present) as Unix ns; local time if no offset."""
    text = tags.get("DateTimeOriginal")
    if not isinstance(text, str):
        return None
    try:
        t = _dt.datetime.strptime(text.strip(), "%Y:%m:%d %H:%M:%S")
    except ValueError:
        return None
    offset = tags.get("OffsetTimeOriginal")
    if isinstance(offset, str):
        try:
            t = t.replace(tzinfo=_dt.datetime.strptime(offset.strip(), "%z").tzinfo)
        except ValueError:
            pass
    if t.tzinfo is None:
        t = t.astimezone()
    ns = int(t.timestamp()) * 1_000_000_000
    sub = tags.get("SubsecTimeOriginal")
    if isinstance(sub, str) and sub.strip().isdigit():
        ns += int(float("0." + sub.strip()) * 1e9)
    return ns

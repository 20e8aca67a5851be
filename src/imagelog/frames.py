"""Input normalisation, in the caller's thread: numpy / PIL / raw bytes / encoded bytes -> ``Frame``.

Everything that can be wrong with an input is found here, where the caller can catch it, so the
background threads only ever see frames they can store.
"""

from __future__ import annotations

import dataclasses
import io
import math
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeAlias

import numpy as np

from . import pixfmt
from .errors import InvalidFrame, UnsupportedInput

if TYPE_CHECKING:
    from PIL import Image as PILImage

__all__ = [
    "ENCODED_MAGIC",
    "PREPARED_MIN_BYTES",
    "BufferPool",
    "Frame",
    "FrameLike",
    "RawFrame",
    "channels_of",
    "normalise",
    "sniff_format",
]

FrameLike: TypeAlias = (
    "np.ndarray[Any, Any] | PILImage.Image | bytes | bytearray | memoryview | RawFrame"
)

#: dtypes a frame may have once normalised.
SUPPORTED_DTYPES = ("uint8", "uint16", "float32", "bool")

#: (magic prefix test) -> format name, for already-encoded images that pass through untouched.
ENCODED_MAGIC: tuple[tuple[bytes, int, str], ...] = (
    (b"\xff\xd8\xff", 0, "jpeg"),
    (b"\x89PNG\r\n\x1a\n", 0, "png"),
    (b"WEBP", 8, "webp"),
    (b"\xff\x0a", 0, "jxl"),
    (b"\x00\x00\x00\x0cJXL \r\n\x87\n", 0, "jxl"),
)

# Raw pixel modes (PIL names, plus BGR/BGRA) -> (channels, dtype, stored mode, reversed channels)
_RAW_MODES: dict[str, tuple[int, str, bool]] = {
    "L": (1, "uint8", False),
    "RGB": (3, "uint8", False),
    "RGBA": (4, "uint8", False),
    "BGR": (3, "uint8", True),
    "BGRA": (4, "uint8", True),
    "I;16": (1, "uint16", False),
    "F": (1, "float32", False),
}


@dataclasses.dataclass(frozen=True, slots=True)
class RawFrame:
    """Raw pixel bytes with their declared size and mode (what ``Image.frombytes`` takes).

    >>> RawFrame(bytes(12), size=(2, 2), mode="RGB").size
    (2, 2)
    """

    data: bytes | bytearray | memoryview
    size: tuple[int, int]
    mode: str = "RGB"


@dataclasses.dataclass(slots=True)
class Frame:
    """A validated frame: pixels (HxW or HxWxC numpy array) or already-encoded bytes."""

    width: int
    height: int
    channels: int
    dtype: str
    pixels: np.ndarray[Any, Any] | None = None
    encoded: bytes | None = None
    encoded_format: str | None = None
    channel_order: str = "RGB"
    converted_from: str | None = None
    pooled: bool = False
    pixel_format: str | None = None
    stride: int | None = None
    bit_depth: int | None = None

    @property
    def nbytes(self) -> int:
        """Bytes this frame holds in memory (what the queue counts)."""
        if self.encoded is not None:
            return len(self.encoded)
        assert self.pixels is not None
        return int(self.pixels.nbytes)


def channels_of(arr: np.ndarray[Any, Any]) -> int:
    """The channel count of an ``HxW`` (1) or ``HxWxC`` (C) array.

    >>> channels_of(np.zeros((2, 3))), channels_of(np.zeros((2, 3, 4)))
    (1, 4)
    """
    return 1 if arr.ndim == 2 else int(arr.shape[2])


def sniff_format(data: bytes | bytearray | memoryview) -> str | None:
    """Return the image format of already-encoded bytes, or None if they do not start like one.

    >>> sniff_format(b"\\x89PNG\\r\\n\\x1a\\n...."), sniff_format(b"hello")
    ('png', None)
    """
    head = bytes(data[:16])
    for magic, offset, name in ENCODED_MAGIC:
        if head[offset : offset + len(magic)] == magic:
            if name == "webp" and head[:4] != b"RIFF":
                continue
            return name
    return None


def _order_name(channels: int) -> str:
    return _ORDER_NAMES[channels]


_ORDER_NAMES = {1: "L", 3: "RGB", 4: "RGBA"}
_DTYPE_NAMES = {"B": "uint8", "H": "uint16", "f": "float32", "?": "bool"}


#: Frames at least this large are copied, under the drop policies, only into buffers that are
#: already touched (recycled, or prepared in the background): a fresh one faults in ~1 page per
#: 4 KiB, 1-15 ms for a 1080p frame on a busy VM.
PREPARED_MIN_BYTES = 1 << 20


class BufferPool:
    """Frame buffers handed back by the encoders once a frame is written, reused by ``log()``.

    Copying a 1080p frame into memory the process already touched costs about a third of copying
    it into fresh pages (no page faults), which is what keeps ``log()``'s tail latency flat. For
    large frames a background thread (``want``) also prepares buffers ahead: allocated and
    touched off the caller's thread, within ``room()`` (the bytes the memory bound leaves).
    """

    def __init__(
        self, max_bytes: int, room: Callable[[], int] | None = None, spares: int = 2
    ) -> None:
        self.max_bytes = max_bytes
        self._free: dict[tuple[tuple[int, ...], np.dtype[Any]], list[np.ndarray[Any, Any]]] = {}
        self._bytes = 0
        self._lock = threading.Lock()
        self._room = room
        self._spares = spares
        self._wanted: tuple[tuple[int, ...], np.dtype[Any]] | None = None
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self.prepared = 0

    @property
    def bytes(self) -> int:
        """Bytes held free in the pool."""
        return self._bytes

    def ready(self, shape: tuple[int, ...], dtype: np.dtype[Any]) -> bool:
        """Whether a buffer of this shape and dtype is free now."""
        return bool(self._free.get((shape, dtype)))

    def take(self, shape: tuple[int, ...], dtype: np.dtype[Any]) -> np.ndarray[Any, Any]:
        """A C-contiguous array of this shape and dtype (recycled if one is free)."""
        with self._lock:
            free = self._free.get((shape, dtype))
            if free:
                arr = free.pop()
                self._bytes -= arr.nbytes
                return arr
        return np.empty(shape, dtype)

    def give(self, arr: np.ndarray[Any, Any], limit: int | None = None) -> bool:
        """Return a buffer nobody uses any more; kept (True) only while the pool stays under its
        bound and under ``limit`` (the room the caller's own memory bound leaves)."""
        with self._lock:
            kept = self._bytes + arr.nbytes
            if kept > self.max_bytes or (limit is not None and kept > limit):
                return False
            self._free.setdefault((arr.shape, arr.dtype), []).append(arr)
            self._bytes += arr.nbytes
            return True

    def short(self) -> None:
        """A frame found no buffer ready: keep one more ready from now on (up to the bound)."""
        self._spares += 1

    def want(self, shape: tuple[int, ...], dtype: np.dtype[Any]) -> None:
        """Keep a few buffers of this shape ready: wake the preparing thread if fewer are free."""
        key = (shape, dtype)
        if (
            len(self._free.get(key, ())) >= self._spares
            or self._stop.is_set()
            or self._room is None
        ):
            return
        if self._room() < dtype.itemsize * math.prod(shape):  # the bound is reached: recycle
            return
        self._wanted = key
        if self._thread is None:
            self._start()
        self._wake.set()

    def _start(self) -> None:
        with self._lock:
            if self._thread is None and not self._stop.is_set():
                self._thread = threading.Thread(
                    target=self._prepare, name="imagelog-buffers", daemon=True
                )
                self._thread.start()

    def _prepare(self) -> None:
        """The preparing thread: allocate and touch buffers of the wanted shape (one byte a page,
        numpy's strided store releases the GIL) while fewer than ``spares`` are free and the
        bound leaves room."""
        while True:
            self._wake.wait()
            self._wake.clear()
            if self._stop.is_set():
                return
            key = self._wanted
            if key is None:
                continue
            shape, dtype = key
            nbytes = dtype.itemsize * math.prod(shape)
            try:
                while not self._stop.is_set() and len(self._free.get(key, ())) < self._spares:
                    room = self._room() if self._room is not None else 0
                    if nbytes > min(room, self.max_bytes - self._bytes):
                        break
                    arr = np.empty(shape, dtype)
                    arr.reshape(-1).view(np.uint8)[::4096] = 0
                    if not self.give(arr, limit=self._bytes + room):
                        break
                    self.prepared += 1
            except Exception:  # short of memory: the caller allocates as before, never raised
                pass

    def close(self, timeout: float | None = None) -> None:
        """Stop the preparing thread (the free buffers stay usable)."""
        self._stop.set()
        self._wake.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)


def _from_array(
    arr: np.ndarray[Any, Any],
    *,
    copy: bool,
    channel_order: str | None,
    pool: BufferPool | None = None,
    keep: bool = True,
) -> Frame:
    if arr.size == 0:
        raise InvalidFrame(f"empty array of shape {arr.shape}: a frame needs at least one pixel")
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim not in (2, 3):
        raise InvalidFrame(
            f"array of shape {arr.shape} is not an image: expected HxW, HxWx1, HxWx3 or HxWx4"
        )
    channels = channels_of(arr)
    if channels not in (1, 3, 4):
        hint = (
            " (is it channel-first? use arr.transpose(1, 2, 0))"
            if arr.shape[0] in (1, 3, 4)
            else ""
        )
        raise InvalidFrame(
            f"array of shape {arr.shape} has {channels} channels; expected 1, 3 or 4{hint}"
        )
    dtype = arr.dtype
    name = _DTYPE_NAMES.get(dtype.char)
    if name is None:
        if dtype.char == "d":
            raise UnsupportedInput(
                "float64 frames are not supported: convert with arr.astype(np.float32) "
                "(stored losslessly as TIFF or .npy)"
            )
        raise UnsupportedInput(
            f"dtype {dtype.name} is not supported; expected one of {', '.join(SUPPORTED_DTYPES)}"
        )
    converted_from = None
    order = channel_order.upper() if channel_order else None
    if order not in (None, "RGB", "RGBA", "BGR", "BGRA", "L"):
        raise InvalidFrame(f"channel_order must be 'RGB' or 'BGR', got {channel_order!r}")
    if not dtype.isnative:
        arr = arr.astype(dtype.newbyteorder("="))
        dtype = arr.dtype
    pooled = False
    if not keep:  # dropped before it is stored: validated, neither copied nor converted
        if order in ("BGR", "BGRA") and channels in (3, 4):
            converted_from = "BGRA" if channels == 4 else "BGR"
    elif order in ("BGR", "BGRA") and channels in (3, 4):
        out = pool.take(arr.shape, dtype) if pool else np.empty(arr.shape, dtype)
        out[:, :, :3] = arr[:, :, 2::-1]
        if channels == 4:
            out[:, :, 3] = arr[:, :, 3]
        arr, pooled = out, pool is not None
        converted_from = "BGRA" if channels == 4 else "BGR"
    elif copy or not arr.flags.c_contiguous:
        out = pool.take(arr.shape, dtype) if pool else np.empty(arr.shape, dtype)
        if arr.flags.c_contiguous:
            # memoryview assignment is a memcpy that keeps the GIL: numpy's copy would release it
            # and then wait, behind the encoder threads, to get it back
            out.data.cast("B")[:] = arr.data.cast("B")
        else:
            np.copyto(out, arr)
        arr, pooled = out, pool is not None
    return Frame(
        width=int(arr.shape[1]), height=int(arr.shape[0]), channels=channels, dtype=name,
        pixels=arr, channel_order=_ORDER_NAMES[channels], converted_from=converted_from,
        pooled=pooled,
    )  # fmt: skip


def _from_pil(img: PILImage.Image, *, channel_order: str | None) -> Frame:
    mode = img.mode
    if mode in ("P", "PA", "CMYK", "YCbCr", "LAB", "HSV", "LA", "RGBX"):
        alpha = mode in ("PA", "LA") or "transparency" in img.info  # "LAB" has no alpha
        img = img.convert("RGBA" if alpha else "RGB")
    elif mode.startswith("I;16"):
        arr16 = np.asarray(img).astype(np.uint16)
        return _from_array(arr16, copy=False, channel_order=None)
    elif mode == "I":
        arr32 = np.asarray(img)
        if arr32.min() < 0 or arr32.max() > 0xFFFF:
            raise UnsupportedInput(
                "PIL mode 'I' image with values outside 0..65535 cannot be stored"
            )
        return _from_array(arr32.astype(np.uint16), copy=False, channel_order=None)
    elif mode == "1":
        # via "L": np.asarray of a "1" image holds 0xff for True, which is not a numpy bool
        return _from_array(np.asarray(img.convert("L")) > 0, copy=False, channel_order=None)
    arr = np.asarray(img)  # a fresh array owned by us
    return _from_array(arr, copy=False, channel_order=channel_order)


#: Pillow mode of an encoded image -> (dtype, channels) that ``run.load()`` gives back for it.
_ENCODED_MODES: dict[str, tuple[str, int]] = {
    "1": ("bool", 1), "L": ("uint8", 1), "RGB": ("uint8", 3), "RGBA": ("uint8", 4),
    "I;16": ("uint16", 1), "I;16B": ("uint16", 1), "I": ("uint16", 1),
}  # fmt: skip


def _from_encoded(data: bytes, fmt: str) -> Frame:
    from PIL import Image, UnidentifiedImageError

    if fmt == "jxl":  # imagecodecs, not a Pillow plugin (pyjpegxl's reads 16-bit gray as 8-bit)
        width, height, channels, dtype = _jxl_header(data)
    else:
        try:
            with Image.open(io.BytesIO(data)) as im:  # reads the header only
                width, height = im.size
                mode = im.mode
                if mode == "P":  # a palette: decoded to its colours
                    mode = "RGBA" if "transparency" in im.info else "RGB"
        except (UnidentifiedImageError, OSError, SyntaxError) as exc:
            raise InvalidFrame(
                f"bytes look like {fmt.upper()} but the header cannot be read: {exc}"
            ) from None
        if mode not in _ENCODED_MODES:
            raise InvalidFrame(
                f"encoded {fmt.upper()} image in mode {mode!r} cannot be stored as logged: "
                "expected gray, RGB or RGBA; convert it (PIL: Image.open(...).convert('RGBA')) "
                "and log the image"
            )
        dtype, channels = _ENCODED_MODES[mode]
        if fmt == "png" and data[24:25] == b"\x10":  # IHDR bit depth 16 (Pillow says RGB/RGBA)
            dtype = "uint16"
    if width <= 0 or height <= 0:
        raise InvalidFrame(f"encoded {fmt.upper()} image has no pixels ({width}x{height})")
    if channels not in (1, 3, 4):
        raise InvalidFrame(
            f"encoded {fmt.upper()} image has {channels} channels; expected 1, 3 or 4"
        )
    return Frame(
        width=width, height=height, channels=channels, dtype=dtype, encoded=data,
        encoded_format=fmt, channel_order=_order_name(channels),
    )  # fmt: skip


def _jxl_header(data: bytes) -> tuple[int, int, int, str]:
    import imagecodecs

    try:
        arr = imagecodecs.jpegxl_decode(data)
    except Exception as exc:
        raise InvalidFrame(f"bytes look like JPEG XL but do not decode: {exc}") from None
    channels = channels_of(arr)
    return int(arr.shape[1]), int(arr.shape[0]), channels, str(arr.dtype)


def _from_raw(raw: RawFrame, *, channel_order: str | None) -> Frame:
    mode = raw.mode.upper() if raw.mode.upper() in ("RGB", "RGBA", "BGR", "BGRA") else raw.mode
    if mode not in _RAW_MODES:
        raise InvalidFrame(
            f"raw mode {raw.mode!r} is not supported; expected one of {', '.join(_RAW_MODES)}"
        )
    try:
        w, h = (int(v) for v in raw.size)
    except (TypeError, ValueError):
        raise InvalidFrame(f"size must be (width, height), got {raw.size!r}") from None
    if w <= 0 or h <= 0:
        raise InvalidFrame(f"size must be positive, got {w}x{h}")
    channels, dtype, reverse = _RAW_MODES[mode]
    itemsize = np.dtype(dtype).itemsize
    expected = w * h * channels * itemsize
    if len(raw.data) != expected:
        raise InvalidFrame(
            f"raw {mode} {w}x{h} needs {expected} bytes ({w}x{h}x{channels}x{itemsize}), "
            f"got {len(raw.data)}"
        )
    arr = np.frombuffer(raw.data, dtype=np.dtype(dtype).newbyteorder("<"))
    arr = arr.reshape((h, w) if channels == 1 else (h, w, channels))
    order = "BGR" if reverse else channel_order
    return _from_array(arr, copy=True, channel_order=order)


def normalise(
    frame: object,
    *,
    copy: bool = True,
    channel_order: str | None = None,
    size: tuple[int, int] | None = None,
    mode: str | None = None,
    pool: BufferPool | None = None,
    pixel_format: str | None = None,
    stride: int | None = None,
    keep: bool = True,
) -> Frame:
    """Validate and normalise one input into a ``Frame``; raise ``InvalidFrame``/``UnsupportedInput``.

    ``keep=False``: the frame is dropped before it is stored, so a numpy array is validated and
    described but neither copied nor converted (``Frame.pixels`` is the array as given).

    With ``pixel_format`` (``"bayer_rggb8"``, ``"yuyv"``, ``"nv12"``, ... see ``imagelog.pixfmt``)
    the frame is a camera buffer (bytes with ``size``, and ``stride`` if its rows are padded) or
    an array of that format's stored shape; it is copied without its padding, as delivered.

    >>> f = normalise(np.zeros((4, 6, 3), np.uint8))
    >>> (f.width, f.height, f.channels, f.dtype)
    (6, 4, 3, 'uint8')
    >>> f = normalise(bytes(8 * 4), size=(6, 4), pixel_format="bayer_rggb8", stride=8)
    >>> (f.width, f.height, f.pixels.shape, f.pixel_format, f.stride)
    (6, 4, (4, 6), 'bayer_rggb8', 8)
    """
    if pixel_format is None and stride is None:
        _check_raw_args(frame, size, mode)
    if pixel_format is not None or stride is not None:
        return _from_pixel_format(
            frame, pixel_format, size=size, stride=stride, mode=mode,
            channel_order=channel_order, pool=pool,
        )  # fmt: skip
    if isinstance(frame, np.ndarray):
        return _from_array(frame, copy=copy, channel_order=channel_order, pool=pool, keep=keep)
    if isinstance(frame, RawFrame):
        return _from_raw(frame, channel_order=channel_order)
    if isinstance(frame, bytes | bytearray | memoryview):
        if size is not None:
            return _from_raw(
                RawFrame(frame, size=size, mode=mode or "RGB"), channel_order=channel_order
            )
        fmt = sniff_format(frame)
        if fmt is None:
            raise InvalidFrame(
                f"{len(frame)} bytes that are not a JPEG, PNG, WebP or JPEG XL image; for raw pixels "
                "pass size=(width, height) and mode='RGB' (or 'L', 'RGBA', 'BGR', 'I;16')"
            )
        return _from_encoded(bytes(frame), fmt)
    if _is_pil_image(frame):
        return _from_pil(frame, channel_order=channel_order)  # type: ignore[arg-type]
    if hasattr(frame, "__array__") and hasattr(frame, "shape"):
        # torch / cupy / jax arrays: move to host memory through the array protocol
        detach = getattr(frame, "detach", None)
        obj = detach().cpu() if callable(detach) else frame
        return _from_array(np.asarray(obj), copy=True, channel_order=channel_order)
    raise UnsupportedInput(
        f"cannot log an object of type {type(frame).__module__}.{type(frame).__qualname__}; expected "
        "a numpy array, a PIL image, encoded JPEG/PNG/WebP/JPEG XL bytes, or raw bytes with size="
    )


def _check_raw_args(frame: object, size: object, mode: object) -> None:
    """``size=`` and ``mode=`` describe raw pixel bytes: refuse them beside any other frame (they
    are ``log()``'s parameters, so metadata of those names would vanish into them)."""
    raw = isinstance(frame, bytes | bytearray | memoryview)
    if raw and size is not None:
        return
    for name, value in (("size", size), ("mode", mode)):
        if value is None:
            continue
        if raw:
            problem = "and needs size=(width, height)"
        else:
            kind = f"{type(frame).__module__}.{type(frame).__qualname__}".removeprefix("builtins.")
            problem = f"(with size=(width, height)), but the frame is a {kind}"
        raise InvalidFrame(
            f"{name}={value!r} describes raw pixel bytes {problem}; "
            f"to store it as metadata pass meta={{{name!r}: {value!r}}}"
        )


#: raw modes -> the pixel format that takes their bytes with a ``stride``
_MODE_FORMATS = {"L": "mono8", "RGB": "rgb8", "RGBA": "rgba8", "BGR": "bgr8", "BGRA": "bgra8",
                 "I;16": "mono16", "F": "32fc1"}  # fmt: skip


def _array_size(arr: np.ndarray[Any, Any], fmt: pixfmt.PixelFormat) -> tuple[int, int]:
    """(width, height) of an array in ``fmt``'s stored shape, or ``InvalidFrame``."""
    shape = arr.shape
    if fmt.kind in ("yuv420sp", "yuv420p"):
        if arr.ndim == 2 and shape[0] % 3 == 0:
            return int(shape[1]), int(shape[0]) * 2 // 3
        want = "(H*3/2) x W (the Y plane, then the chroma planes)"
    elif fmt.channels == 1:
        if arr.ndim == 3 and shape[2] == 1:
            return int(shape[1]), int(shape[0])
        if arr.ndim == 2:
            return int(shape[1]), int(shape[0])
        want = "H x W"
    else:
        if arr.ndim == 3 and shape[2] == fmt.channels:
            return int(shape[1]), int(shape[0])
        want = f"H x W x {fmt.channels}"
    raise InvalidFrame(f"a {fmt.name} array must be shaped {want}, got {shape}")


def _from_pixel_format(
    frame: object,
    pixel_format: str | None,
    *,
    size: tuple[int, int] | None,
    stride: int | None,
    mode: str | None,
    channel_order: str | None,
    pool: BufferPool | None,
) -> Frame:
    if pixel_format is None:  # stride= on raw bytes in a PIL mode
        key = (
            (mode or "RGB").upper()
            if (mode or "RGB").upper() in ("RGB", "RGBA", "BGR", "BGRA")
            else mode
        )
        if key not in _MODE_FORMATS:
            raise InvalidFrame(
                f"stride= needs pixel_format= (or a raw mode: {', '.join(_MODE_FORMATS)}), "
                f"got mode {mode!r}"
            )
        pixel_format = _MODE_FORMATS[key]
    elif mode is not None:
        raise InvalidFrame("pass pixel_format= or mode=, not both")
    fmt = pixfmt.parse(pixel_format)
    if channel_order is not None:
        raise InvalidFrame(
            f"pixel_format={fmt.name!r} says the channel order; drop channel_order={channel_order!r}"
        )
    views: list[np.ndarray[Any, Any]]
    if isinstance(frame, np.ndarray) and size is None:
        if stride is not None:
            raise InvalidFrame(
                "stride= describes the rows of a buffer: pass size=(width, height) with it "
                "(an array's own strides are read from the array)"
            )
        want = np.dtype(fmt.dtype)
        if frame.dtype.kind != want.kind or frame.dtype.itemsize != want.itemsize:
            raise UnsupportedInput(f"{fmt.name} frames are {fmt.dtype} arrays, got {frame.dtype}")
        w, h = _array_size(frame, fmt)
        fmt.check_size(w, h)
        row_stride = int(frame.strides[0])
        views = [frame.reshape(fmt.encoded_shape(w, h))]
    elif isinstance(frame, bytes | bytearray | memoryview | np.ndarray):
        if size is None:
            raise InvalidFrame(f"raw {fmt.name} bytes need size=(width, height)")
        try:
            w, h = (int(v) for v in size)
        except (TypeError, ValueError):
            raise InvalidFrame(f"size must be (width, height), got {size!r}") from None
        views, row_stride = pixfmt.plane_views(frame, fmt, w, h, stride)
        if len(views) == 1:
            views = [views[0].reshape(fmt.encoded_shape(w, h))]
    else:
        raise UnsupportedInput(
            f"pixel_format= takes bytes (with size=) or a numpy array, "
            f"not {type(frame).__module__}.{type(frame).__qualname__}"
        )
    if len(views) == 1:
        order = fmt.pattern if fmt.kind == "rgb" else None
        f = _from_array(views[0], copy=True, channel_order=order, pool=pool)
    else:  # planar YUV: the planes one after another, without their padding
        shape = fmt.encoded_shape(w, h)
        out = pool.take(shape, np.dtype(np.uint8)) if pool else np.empty(shape, np.uint8)
        flat, offset = out.reshape(-1), 0
        for plane in views:
            n = plane.size
            np.copyto(flat[offset : offset + n].reshape(plane.shape), plane)
            offset += n
        f = Frame(
            width=w, height=h, channels=1, dtype="uint8", pixels=out, channel_order="L",
            pooled=pool is not None,
        )  # fmt: skip
    f.width, f.height = w, h
    f.pixel_format = fmt.name.replace("bgr", "rgb") if fmt.kind == "rgb" else fmt.name
    f.stride = row_stride
    f.bit_depth = fmt.bit_depth
    return f


def _is_pil_image(obj: object) -> bool:
    import sys

    mod = sys.modules.get("PIL.Image")  # if PIL was never imported, obj cannot be a PIL image
    return mod is not None and isinstance(obj, mod.Image)

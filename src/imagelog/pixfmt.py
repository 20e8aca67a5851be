"""Camera pixel formats: Bayer mosaics, YUV 4:2:2 and 4:2:0, mono and RGB with padded rows.

What a buffer of each format looks like (its planes, row stride, bit depth), the caller-thread
check that a delivered buffer is what it claims, and the conversion to RGB for people
(``to_rgb``, through OpenCV's ``cvtColor``: the ``imagelog[color]`` extra).

Names follow the encodings of ROS ``sensor_msgs/Image`` and Foxglove ``RawImage``:

>>> parse("bayer_rggb8").stored_shape(4, 2), parse("nv12").stored_shape(4, 2)
((2, 4), (3, 4))
>>> parse("yuv422_yuy2").name, parse("bayer_grbg12").bit_depth
('yuyv', 12)
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from .errors import InvalidFrame, UnsupportedInput

__all__ = [
    "NAMES",
    "PLANES",
    "PixelFormat",
    "from_rgb",
    "from_stored",
    "parse",
    "plane_views",
    "to_rgb",
    "to_stored",
]

Array = np.ndarray[Any, Any]


@dataclasses.dataclass(frozen=True, slots=True)
class PixelFormat:
    """One pixel format: how its bytes are laid out and how they become RGB.

    Attributes:
        name: the canonical name (``bayer_rggb8``, ``yuyv``, ``nv12``, ``mono16``, ``rgb8`` ...).
        kind: ``bayer``, ``yuv422`` (packed), ``yuv420sp`` (NV12/NV21), ``yuv420p`` (I420),
            ``mono`` or ``rgb``.
        dtype: the sample type (``uint8``, ``uint16``, ``float32``).
        bit_depth: significant bits per sample (12 for ``bayer_rggb12``: 12 bits in 16).
        channels: samples per pixel in the first plane (Bayer 1, YUYV 2, RGB 3, RGBA 4).
        pattern: ``RGGB``.. for Bayer, ``YUYV``/``UYVY``, ``NV12``/``NV21``/``I420``,
            ``L``/``RGB``/``RGBA``/``BGR``/``BGRA``.
    """

    name: str
    kind: str
    dtype: str
    bit_depth: int
    channels: int
    pattern: str

    @property
    def itemsize(self) -> int:
        """Bytes per sample."""
        return int(np.dtype(self.dtype).itemsize)

    @property
    def raw(self) -> bool:
        """Whether the frame is not viewable as it is (Bayer, YUV): it must be stored losslessly
        and converted for display."""
        return self.kind in ("bayer", "yuv422", "yuv420sp", "yuv420p")

    def check_size(self, width: int, height: int) -> None:
        """Raise ``InvalidFrame`` if ``width x height`` cannot be held in this format."""
        if width <= 0 or height <= 0:
            raise InvalidFrame(f"size must be positive, got {width}x{height}")
        if self.kind == "yuv422" and width % 2:
            raise InvalidFrame(
                f"{self.name} packs 2 pixels in 4 bytes: width must be even, got {width}"
            )
        if self.kind in ("yuv420sp", "yuv420p") and (width % 2 or height % 2):
            raise InvalidFrame(
                f"{self.name} subsamples chroma 2x2: width and height must be even, "
                f"got {width}x{height}"
            )

    def row_bytes(self, width: int) -> int:
        """Bytes of one unpadded row of the first plane."""
        return width * self.channels * self.itemsize

    def stored_shape(self, width: int, height: int) -> tuple[int, ...]:
        """The array ``Run.load`` returns (what OpenCV's ``cvtColor`` takes for this format)."""
        if self.kind in ("yuv420sp", "yuv420p"):
            return (height * 3 // 2, width)
        if self.channels == 1:
            return (height, width)
        return (height, width, self.channels)

    def encoded_shape(self, width: int, height: int) -> tuple[int, ...]:
        """The array handed to the codec: one gray plane for Bayer and YUV (packed 4:2:2 as
        ``height x 2*width`` bytes), ``HxW`` / ``HxWxC`` otherwise."""
        if self.kind == "yuv422":
            return (height, width * 2)
        return self.stored_shape(width, height)

    def planes(self, width: int, height: int, stride: int) -> list[tuple[int, int, int]]:
        """``(rows, row_bytes, stride)`` of each plane, in buffer order, for a first-plane
        ``stride`` (NV12/NV21: the interleaved chroma plane has the same stride; I420: the U and
        V planes have half of it, as V4L2, Android and FFmpeg lay them out)."""
        first = (height, self.row_bytes(width), stride)
        if self.kind == "yuv420sp":
            return [first, (height // 2, width, stride)]
        if self.kind == "yuv420p":
            chroma = (height // 2, width // 2, stride // 2)
            return [first, chroma, chroma]
        return [first]


def _table() -> dict[str, PixelFormat]:
    out: dict[str, PixelFormat] = {}
    for pattern in ("rggb", "bggr", "gbrg", "grbg"):
        for bits in (8, 10, 12, 14, 16):
            name = f"bayer_{pattern}{bits}"
            dtype = "uint8" if bits == 8 else "uint16"
            out[name] = PixelFormat(name, "bayer", dtype, bits, 1, pattern.upper())
    for bits in (8, 10, 12, 14, 16):
        name = f"mono{bits}"
        out[name] = PixelFormat(name, "mono", "uint8" if bits == 8 else "uint16", bits, 1, "L")
    out["32fc1"] = PixelFormat("32fc1", "mono", "float32", 32, 1, "L")
    for order in ("rgb", "bgr", "rgba", "bgra"):
        for bits in (8, 16):
            name = f"{order}{bits}"
            dtype = "uint8" if bits == 8 else "uint16"
            out[name] = PixelFormat(name, "rgb", dtype, bits, len(order), order.upper())
    out["yuyv"] = PixelFormat("yuyv", "yuv422", "uint8", 8, 2, "YUYV")
    out["uyvy"] = PixelFormat("uyvy", "yuv422", "uint8", 8, 2, "UYVY")
    out["nv12"] = PixelFormat("nv12", "yuv420sp", "uint8", 8, 1, "NV12")
    out["nv21"] = PixelFormat("nv21", "yuv420sp", "uint8", 8, 1, "NV21")
    out["i420"] = PixelFormat("i420", "yuv420p", "uint8", 8, 1, "I420")
    return out


_FORMATS = _table()
#: Other spellings (ROS, Foxglove, FourCC) -> canonical name.
_ALIASES = {
    "yuv422_yuy2": "yuyv", "yuy2": "yuyv", "yuv422": "uyvy", "uyvy422": "uyvy",
    "iyuv": "i420", "yuv420": "i420", "8uc1": "mono8", "16uc1": "mono16", "8uc3": "bgr8",
    "8uc4": "bgra8", "16uc3": "bgr16", "16uc4": "bgra16",
}  # fmt: skip
#: Every accepted pixel format name, canonical names first.
NAMES: tuple[str, ...] = (*_FORMATS, *_ALIASES)


def parse(name: str | PixelFormat) -> PixelFormat:
    """The ``PixelFormat`` named ``name`` (case-insensitive; ROS/Foxglove aliases accepted).

    >>> parse("BAYER_RGGB16").dtype, parse("uyvy").kind
    ('uint16', 'yuv422')
    """
    if isinstance(name, PixelFormat):
        return name
    if not isinstance(name, str):
        raise UnsupportedInput(f"pixel_format must be a str such as 'bayer_rggb8', not {name!r}")
    key = name.strip().lower()
    key = _ALIASES.get(key, key)
    fmt = _FORMATS.get(key)
    if fmt is None:
        raise InvalidFrame(
            f"unknown pixel_format {name!r}; expected one of bayer_rggb8/bggr8/gbrg8/grbg8 (and "
            "10, 12, 14, 16 bits), yuyv (yuv422_yuy2), uyvy (yuv422), nv12, nv21, i420, mono8, "
            "mono16, 32FC1, rgb8, bgr8, rgba8, bgra8, rgb16, bgr16, rgba16, bgra16"
        )
    return fmt


def _as_bytes(data: object) -> memoryview:
    try:
        view = memoryview(data)  # type: ignore[arg-type]
    except TypeError:
        raise UnsupportedInput(
            f"pixel buffer must be bytes, bytearray, memoryview or a numpy array, "
            f"not {type(data).__name__}"
        ) from None
    if not view.c_contiguous:
        raise InvalidFrame("pixel buffer must be contiguous (pass the array, not a strided view)")
    return view.cast("B") if view.format != "B" or view.ndim != 1 else view


def plane_views(
    data: bytes | bytearray | memoryview | Array,
    fmt: PixelFormat,
    width: int,
    height: int,
    stride: int | None,
) -> tuple[list[Array], int]:
    """Check a delivered buffer and return read-only views of its planes (padding left out),
    each shaped as it goes into the stored array, and the first plane's stride in bytes.

    Raises ``InvalidFrame`` naming what does not fit: the size, the stride, the byte count.

    >>> views, stride = plane_views(bytes(range(12)), parse("mono8"), 2, 3, 4)
    >>> views[0].tolist(), stride
    ([[0, 1], [4, 5], [8, 9]], 4)
    """
    fmt.check_size(width, height)
    row = fmt.row_bytes(width)
    if stride is None:
        stride = row
    elif isinstance(stride, bool) or not isinstance(stride, int | np.integer):
        raise InvalidFrame(f"stride must be an int (bytes per row), got {stride!r}")
    stride = int(stride)
    if stride < row:
        raise InvalidFrame(
            f"stride {stride} is shorter than one row of {width} {fmt.name} pixels ({row} bytes)"
        )
    if stride % fmt.itemsize:
        raise InvalidFrame(
            f"stride {stride} is not a whole number of {fmt.itemsize}-byte {fmt.name} samples"
        )
    if fmt.kind == "yuv420p" and stride % 2:
        raise InvalidFrame(f"i420 stride must be even (its U and V planes take half), got {stride}")
    buf = _as_bytes(data)
    planes = fmt.planes(width, height, stride)
    full = sum(rows * pitch for rows, _, pitch in planes)
    _, last_row, last_pitch = planes[-1]
    least = full - (last_pitch - last_row)  # the last row of the last plane may be unpadded
    if not least <= len(buf) <= full:
        layout = " + ".join(
            f"{rows} rows x {pitch} bytes" for rows, _, pitch in planes
        )  # fmt: skip
        expect = f"{full}" if least == full else f"{least} to {full}"
        raise InvalidFrame(
            f"{fmt.name} {width}x{height} with stride {stride} needs {expect} bytes ({layout}), "
            f"got {len(buf)}"
        )
    arr = np.frombuffer(buf, np.uint8)
    views: list[Array] = []
    offset = 0
    for rows, row_bytes, pitch in planes:
        plane = np.lib.stride_tricks.as_strided(
            arr[offset:], shape=(rows, row_bytes), strides=(pitch, 1), writeable=False
        )
        if fmt.itemsize > 1:
            plane = plane.view(np.dtype(fmt.dtype).newbyteorder("<"))
        views.append(plane)
        offset += rows * pitch
    return views, stride


# OpenCV names a Bayer pattern by the 2x2 block starting at the second row and column, so a
# mosaic whose first row is R G ... is COLOR_BayerBG2RGB (as ROS cv_bridge maps them; tested
# against mosaics of photographs in tests/test_pixfmt.py).
_BAYER_CODES = {"RGGB": "BG", "BGGR": "RG", "GBRG": "GR", "GRBG": "GB"}


def _cv2() -> Any:
    try:
        import cv2
    except ImportError:
        raise ImportError(
            "converting Bayer and YUV frames to RGB needs OpenCV: pip install 'imagelog[color]'"
        ) from None
    return cv2


def to_rgb(array: Array, pixel_format: str | PixelFormat, *, as_uint8: bool = False) -> Array:
    """Convert a frame as stored (what ``Run.load(rec)`` returns) to ``HxWx3`` RGB.

    Bayer mosaics are demosaiced (OpenCV's bilinear ``cvtColor``; 16-bit stays 16-bit, with the
    values of its bit depth), YUV is converted with ITU-R BT.601 limited-range coefficients
    (OpenCV's), mono is repeated into three channels and RGBA loses its alpha. For the viewer's
    thumbnails and exports as much as for people.

    Args:
        array: the stored frame (``Run.load(rec)``; shape ``PixelFormat.stored_shape``).
        pixel_format: its ``image.pixel_format`` (a name or a ``PixelFormat``).
        as_uint8: scale to 8 bits by the bit depth (12-bit: ``>> 4``; float: 0..1 -> 0..255),
            for thumbnails and exports that show, not measure.

    Raises:
        InvalidFrame: the array's shape or dtype does not fit the pixel format.
        ImportError: OpenCV is missing (Bayer and YUV only; ``pip install 'imagelog[color]'``).

    >>> to_rgb(np.full((2, 2), 9, np.uint8), "mono8")[0, 0].tolist()
    [9, 9, 9]
    >>> to_rgb(np.full((4, 4), 4095, np.uint16), "bayer_rggb12", as_uint8=True)[0, 0].tolist()
    [255, 255, 255]
    """
    fmt = parse(pixel_format)
    rgb = _to_rgb(array, fmt)
    if not as_uint8 or rgb.dtype == np.uint8:
        return rgb
    if fmt.dtype == "float32":
        return np.asarray(np.rint(np.clip(rgb, 0.0, 1.0) * 255), np.uint8)
    shift = max(0, fmt.bit_depth - 8)
    return np.asarray(np.minimum(rgb >> shift, 255), np.uint8)


def _to_rgb(array: Array, fmt: PixelFormat) -> Array:
    if array.dtype != np.dtype(fmt.dtype):
        raise InvalidFrame(f"{fmt.name} frames are {fmt.dtype}, got {array.dtype}")
    if fmt.kind == "mono":
        if array.ndim == 3 and array.shape[2] == 1:
            array = array[:, :, 0]
        if array.ndim != 2:
            raise InvalidFrame(f"{fmt.name} frames are HxW, got shape {array.shape}")
        return np.repeat(array[:, :, None], 3, axis=2)
    if fmt.kind == "rgb":
        if array.ndim != 3 or array.shape[2] not in (3, 4):
            raise InvalidFrame(f"{fmt.name} frames are HxWx3 or HxWx4, got shape {array.shape}")
        rgb = array[:, :, 2::-1] if fmt.pattern.startswith("BGR") else array[:, :, :3]
        return np.ascontiguousarray(rgb)
    cv2 = _cv2()
    if fmt.kind == "bayer":
        if array.ndim != 2 or array.shape[0] < 3 or array.shape[1] < 3:
            # OpenCV's demosaicing needs a neighbour on every side: smaller gives black
            raise InvalidFrame(f"{fmt.name} mosaics are HxW (at least 3x3), got {array.shape}")
        code = getattr(cv2, f"COLOR_Bayer{_BAYER_CODES[fmt.pattern]}2RGB")
        return np.asarray(cv2.cvtColor(np.ascontiguousarray(array), code))
    if fmt.kind == "yuv422":
        if array.ndim == 2 and array.shape[1] % 2 == 0:
            array = array.reshape(array.shape[0], array.shape[1] // 2, 2)
        if array.ndim != 3 or array.shape[2] != 2:
            raise InvalidFrame(f"{fmt.name} frames are HxWx2, got shape {array.shape}")
        code = cv2.COLOR_YUV2RGB_YUYV if fmt.pattern == "YUYV" else cv2.COLOR_YUV2RGB_UYVY
        return np.asarray(cv2.cvtColor(np.ascontiguousarray(array), code))
    if array.ndim != 2 or array.shape[0] % 3 or array.shape[1] % 2:
        raise InvalidFrame(
            f"{fmt.name} frames are (H*3/2)xW with even H and W, got shape {array.shape}"
        )
    code = getattr(cv2, f"COLOR_YUV2RGB_{fmt.pattern}")
    return np.asarray(cv2.cvtColor(np.ascontiguousarray(array), code))


_SITES = ((0, 0), (0, 1), (1, 0), (1, 1))
_RGB_INDEX = {"R": 0, "G": 1, "B": 2}


def from_rgb(rgb: Array, pixel_format: str | PixelFormat) -> Array:
    """What a camera delivering ``pixel_format`` would hand over for the scene ``rgb``, in the
    stored shape (for simulations, tests and benchmarks; numpy only, no OpenCV).

    A Bayer mosaic keeps one sample per pixel; YUV is ITU-R BT.601 limited range with chroma
    averaged over each 2x1 (4:2:2) or 2x2 (4:2:0) block. ``rgb`` must have the format's dtype
    (``uint16`` for 10 to 16 bits, scaled to its bit depth by the caller).

    >>> from_rgb(np.full((2, 2, 3), (200, 100, 50), np.uint8), "bayer_rggb8").tolist()
    [[200, 100], [100, 50]]
    """
    fmt = parse(pixel_format)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.dtype(fmt.dtype):
        raise InvalidFrame(
            f"from_rgb needs an HxWx3 {fmt.dtype} array, got {rgb.dtype} {rgb.shape}"
        )
    h, w = rgb.shape[:2]
    fmt.check_size(w, h)
    if fmt.kind == "bayer":
        out = np.empty((h, w), rgb.dtype)
        for (dy, dx), colour in zip(_SITES, fmt.pattern, strict=True):
            out[dy::2, dx::2] = rgb[dy::2, dx::2, _RGB_INDEX[colour]]
        return out
    if fmt.kind == "rgb":
        order = [_RGB_INDEX[c] for c in fmt.pattern[:3]]
        if fmt.channels == 3:
            return np.ascontiguousarray(rgb[:, :, order])
        alpha = np.full((h, w, 1), np.iinfo(rgb.dtype).max, rgb.dtype)
        return np.concatenate([rgb[:, :, order], alpha], axis=2)
    f = rgb.astype(np.float32)
    r, g, b = f[:, :, 0], f[:, :, 1], f[:, :, 2]
    if fmt.kind == "mono":
        gray: Array = np.clip(
            np.rint(0.299 * r + 0.587 * g + 0.114 * b), 0, np.iinfo(rgb.dtype).max
        )
        return gray.astype(rgb.dtype)
    y = 16 + (65.481 * r + 128.553 * g + 24.966 * b) / 255
    cb = 128 + (-37.797 * r - 74.203 * g + 112.0 * b) / 255
    cr = 128 + (112.0 * r - 93.786 * g - 18.214 * b) / 255
    y8 = np.clip(np.rint(y), 0, 255).astype(np.uint8)
    if fmt.kind == "yuv422":
        u = np.clip(np.rint((cb[:, 0::2] + cb[:, 1::2]) / 2), 0, 255).astype(np.uint8)
        v = np.clip(np.rint((cr[:, 0::2] + cr[:, 1::2]) / 2), 0, 255).astype(np.uint8)
        out = np.empty((h, w, 2), np.uint8)
        luma, chroma = (0, 1) if fmt.pattern == "YUYV" else (1, 0)
        out[:, :, luma] = y8
        out[:, 0::2, chroma] = u
        out[:, 1::2, chroma] = v
        return out
    u = np.clip(
        np.rint((cb[0::2, 0::2] + cb[0::2, 1::2] + cb[1::2, 0::2] + cb[1::2, 1::2]) / 4), 0, 255
    ).astype(np.uint8)
    v = np.clip(
        np.rint((cr[0::2, 0::2] + cr[0::2, 1::2] + cr[1::2, 0::2] + cr[1::2, 1::2]) / 4), 0, 255
    ).astype(np.uint8)
    if fmt.kind == "yuv420sp":
        first, second = (u, v) if fmt.pattern == "NV12" else (v, u)
        uv = np.stack([first, second], axis=2).reshape(h // 2, w)
        return np.concatenate([y8, uv], axis=0)
    chroma_rows = np.concatenate([u.reshape(-1), v.reshape(-1)]).reshape(h // 2, w)
    return np.concatenate([y8, chroma_rows], axis=0)


#: ``image.layout`` of a frame whose file holds its planes side by side (see ``to_stored``).
PLANES = "planes"


def to_stored(pixels: Array, pixel_format: str | PixelFormat) -> tuple[Array, str | None]:
    """The array the codec encodes for a delivered frame, and its ``image.layout``.

    Codecs predict a pixel from its neighbours, which in a Bayer mosaic or packed YUYV are other
    colours. So the file holds the planes side by side, losslessly rearranged (a background
    thread does it, ~1 ms at 1080p): a Bayer mosaic as its four colour sites tiled 2x2
    (``[[s00, s01], [s10, s11]]``, each ``H/2 x W/2``; even sizes only), YUYV/UYVY as
    ``Y | U | V`` across ``H x 2W``, NV12/NV21 as I420 (``Y``, then ``U``, then ``V``). JPEG XL
    effort 1 at 1080p: a Bayer mosaic 91% -> 60% of raw, YUYV 53% -> 41%, NV12 46% -> 43%
    (docs/formats.md). Other formats are encoded as delivered (layout None).

    >>> m = np.arange(16, dtype=np.uint8).reshape(4, 4)
    >>> stored, layout = to_stored(m, "bayer_rggb8")
    >>> stored.tolist()[0], layout, np.array_equal(from_stored(stored, "bayer_rggb8", layout, 4, 4), m)
    ([0, 2, 1, 3], 'planes', True)
    """
    fmt = parse(pixel_format)
    if (
        fmt.kind == "bayer"
        and pixels.ndim == 2
        and not pixels.shape[0] % 2
        and not pixels.shape[1] % 2
    ):
        h, w = pixels.shape[0] // 2, pixels.shape[1] // 2
        out = np.empty_like(pixels)
        for i, (dy, dx) in enumerate(_SITES):
            out[(i // 2) * h : (i // 2 + 1) * h, (i % 2) * w : (i % 2 + 1) * w] = pixels[
                dy::2, dx::2
            ]
        return out, PLANES
    if fmt.kind == "yuv422":
        packed = pixels.reshape(pixels.shape[0], -1)  # H x 2W bytes
        h, w = packed.shape[0], packed.shape[1] // 2
        luma = 0 if fmt.pattern == "YUYV" else 1
        chroma = 1 - luma
        out = np.empty_like(packed)
        out[:, :w] = packed[:, luma::2]
        out[:, w : w + w // 2] = packed[:, chroma::4]
        out[:, w + w // 2 :] = packed[:, chroma + 2 :: 4]
        return out, PLANES
    if fmt.kind == "yuv420sp":
        h = pixels.shape[0] * 2 // 3
        out = np.empty_like(pixels)
        out[:h] = pixels[:h]
        uv = pixels[h:].reshape(-1)
        flat = out[h:].reshape(-1)
        first, second = (0, 1) if fmt.pattern == "NV12" else (1, 0)
        half = flat.size // 2
        flat[:half] = uv[first::2]
        flat[half:] = uv[second::2]
        return out, PLANES
    return pixels, None


def from_stored(
    arr: Array, pixel_format: str | PixelFormat, layout: str | None, width: int, height: int
) -> Array:
    """Undo ``to_stored``: the decoded file -> the frame as delivered, shaped ``stored_shape``."""
    fmt = parse(pixel_format)
    if layout not in (None, PLANES):
        raise InvalidFrame(f"unknown image.layout {layout!r} for {fmt.name}")
    if layout == PLANES:
        if fmt.kind == "bayer":
            h, w = height // 2, width // 2
            out = np.empty_like(arr)
            for i, (dy, dx) in enumerate(_SITES):
                out[dy::2, dx::2] = arr[
                    (i // 2) * h : (i // 2 + 1) * h, (i % 2) * w : (i % 2 + 1) * w
                ]
            arr = out
        elif fmt.kind == "yuv422":
            luma = 0 if fmt.pattern == "YUYV" else 1
            chroma = 1 - luma
            out = np.empty_like(arr)
            out[:, luma::2] = arr[:, :width]
            out[:, chroma::4] = arr[:, width : width + width // 2]
            out[:, chroma + 2 :: 4] = arr[:, width + width // 2 :]
            arr = out
        elif fmt.kind == "yuv420sp":
            out = np.empty_like(arr)
            out[:height] = arr[:height]
            flat = arr[height:].reshape(-1)
            uv = out[height:].reshape(-1)
            first, second = (0, 1) if fmt.pattern == "NV12" else (1, 0)
            half = flat.size // 2
            uv[first::2] = flat[:half]
            uv[second::2] = flat[half:]
            arr = out
    return arr.reshape(fmt.stored_shape(width, height))

"""The codec protocol: what every image format declares, and the helpers formats share."""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np

from ..errors import FormatMismatch
from ..frames import Frame

__all__ = ["Codec", "Pixels", "as_logged", "imagecodecs_version"]

Pixels = np.ndarray[Any, Any]

#: XMP namespace of the embedded record.
XMP_NS = "https://github.com/imagelog/imagelog/ns/1.0/"
_XMP_HEAD = (
    '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>'
    '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
    f'<rdf:Description rdf:about="" xmlns:imagelog="{XMP_NS}"><imagelog:record>'
)
_XMP_TAIL = '</imagelog:record></rdf:Description></rdf:RDF></x:xmpmeta><?xpacket end="w"?>'


#: library name -> the imagecodecs module whose ``<name>_version()`` reports it
_IMAGECODECS_MODULES = {
    "libjxl": "jpegxl", "libpng": "png", "libjpeg_turbo": "jpeg8", "libwebp": "webp",
    "libtiff": "tiff", "qoi": "qoi", "libavif": "avif", "zstd": "zstd", "lz4": "lz4",
}  # fmt: skip


@functools.cache
def imagecodecs_version(lib: str) -> str:
    """Return ``imagecodecs X (libfoo Y)`` for the record's ``image.encoder.version``.

    Asks only the one codec module (``imagecodecs.version()`` would import every extension
    module imagecodecs has); ``register()`` calls this at import, in the importing thread, so
    worker threads never import extension modules (an import racing a ``fork()`` can crash).
    """
    import imagecodecs

    module = _IMAGECODECS_MODULES.get(lib)
    func = getattr(imagecodecs, f"{module}_version", None) if module else None
    if func is None:
        return f"imagecodecs {imagecodecs.__version__}"
    return f"imagecodecs {imagecodecs.__version__} ({func()})"


def as_logged(arr: Pixels, dtype: str, channels: int) -> Pixels:
    """A decoded array in the dtype and channel count that were logged.

    Undoes what decoders legitimately change: 1-bit PNG read as uint8, an opaque alpha channel
    that libwebp drops, a gray image read as HxWx1.
    """
    if dtype == "bool" and arr.dtype != np.bool_:
        arr = arr > 0
    if channels == 4 and arr.ndim == 3 and arr.shape[2] == 3:  # libwebp drops an opaque alpha
        alpha = np.full((*arr.shape[:2], 1), np.iinfo(arr.dtype).max, arr.dtype)
        arr = np.concatenate([arr, alpha], axis=2)
    if channels == 1 and arr.ndim == 3:
        arr = arr[:, :, 0]
    return arr


def xmp_packet(record_json: str) -> bytes:
    """An XMP packet holding the record JSON as the text of ``imagelog:record``."""
    escaped = record_json.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return (_XMP_HEAD + escaped + _XMP_TAIL).encode("utf-8")


def record_from_xmp(data: bytes) -> str | None:
    """Find the record JSON in bytes holding our XMP packet (any container), or None."""
    head = b"<imagelog:record>"
    start = data.find(head)
    if start < 0:
        return None
    end = data.find(b"</imagelog:record>", start)
    if end < 0:
        return None
    text = data[start + len(head) : end].decode("utf-8", "replace")
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


class Codec:
    """One image format: its declarations, and encode/decode/embed/extract.

    Subclasses set the class attributes and implement ``encode`` and ``decode``. ``embed`` puts the
    record JSON inside the encoded file; a codec with no place for it returns None and the writer
    stores a ``.json`` sidecar instead.
    """

    name: ClassVar[str]
    extension: ClassVar[str]
    mime_type: ClassVar[str]
    lossless: ClassVar[bool]
    dtypes: ClassVar[frozenset[str]]
    channels: ClassVar[frozenset[int]] = frozenset({1, 3, 4})
    releases_gil: ClassVar[bool] = True
    defaults: ClassVar[Mapping[str, Any]] = {}
    library: ClassVar[str] = ""
    alternative: ClassVar[str] = "'lossless'"

    @property
    def version(self) -> str:
        """The encoder library and its version, for the record."""
        return imagecodecs_version(self.library) if self.library else ""

    def validate(self, frame: Frame, params: Mapping[str, Any]) -> None:
        """Raise ``FormatMismatch`` (in the caller's thread) if this format cannot hold ``frame``."""
        if frame.dtype not in self.dtypes:
            raise FormatMismatch(
                f"format {self.name!r} cannot store {frame.dtype} frames without changing them; "
                f"use {self.alternative} instead"
            )
        if frame.channels not in self.channels:
            raise FormatMismatch(
                f"format {self.name!r} cannot store {frame.channels}-channel frames; "
                f"use {self.alternative} instead"
            )

    def params(self, overrides: Mapping[str, Any]) -> dict[str, Any]:
        """The full parameter set: defaults updated with ``overrides`` (unknown names rejected)."""
        unknown = sorted(set(overrides) - set(self.defaults))
        if unknown:
            known = ", ".join(sorted(self.defaults)) or "none"
            raise FormatMismatch(
                f"format {self.name!r} has no parameter {', '.join(unknown)}; its parameters: {known}"
            )
        return {**self.defaults, **overrides}

    def is_lossless(self, params: Mapping[str, Any]) -> bool:
        """Whether these parameters keep every pixel (for codecs with both modes)."""
        return self.lossless

    def encode(self, pixels: Pixels, params: Mapping[str, Any]) -> bytes:
        """Encode a C-contiguous HxW or HxWxC array."""
        raise NotImplementedError

    def decode(self, data: bytes) -> Pixels:
        """Decode to a numpy array."""
        raise NotImplementedError

    def embed(self, data: bytes, record_json: str) -> bytes | None:
        """Return ``data`` with the record inside it, or None where the format has no place for it."""
        return None

    def encode_with_record(
        self, pixels: Pixels, params: Mapping[str, Any], record_json: str
    ) -> tuple[bytes, bool]:
        """Encode and embed the record; the bool says whether it is inside (else: a sidecar)."""
        data = self.encode(pixels, params)
        embedded = self.embed(data, record_json)
        return (data, False) if embedded is None else (embedded, True)

    def embeds_while_encoding(self, params: Mapping[str, Any]) -> bool:
        """Whether a codec with no ``embed`` puts the record in while encoding, losslessly (so
        bytes encoded bare can be decoded and encoded again with the record: TIFF)."""
        own = type(self).encode_with_record is not Codec.encode_with_record
        return own and self.is_lossless(params)

    def extract(self, data: bytes) -> str | None:
        """Return the record JSON embedded by ``embed``, or None."""
        return record_from_xmp(data)

    def describe(self) -> dict[str, Any]:
        """The codec's declarations as a JSON-able dict (for ``imagelog bench`` and docs)."""
        return {
            "name": self.name,
            "extension": self.extension,
            "lossless": self.lossless,
            "dtypes": sorted(self.dtypes),
            "channels": sorted(self.channels),
            "releases_gil": self.releases_gil,
            "defaults": dict(self.defaults),
            "version": self.version,
        }

    def __repr__(self) -> str:
        return f"<codec {self.name} {json.dumps(dict(self.defaults))}>"

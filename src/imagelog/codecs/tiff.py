"""TIFF through libtiff (imagecodecs): 16-bit and float32 with deflate and a predictor."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import imagecodecs
import numpy as np

from .base import Codec, Pixels

_PREFIX = "imagelog:"


class TIFF(Codec):
    """TIFF, lossless; the record in the ImageDescription tag."""

    name = "tiff"
    extension = "tif"
    mime_type = "image/tiff"
    lossless = True
    dtypes = frozenset({"uint8", "uint16", "float32"})
    defaults = {"compression": "deflate", "level": 1, "predictor": True}
    library = "libtiff"

    def encode(self, pixels: Pixels, params: Mapping[str, Any]) -> bytes:
        """Encode without a record."""
        return self._encode(pixels, params, None)

    def encode_with_record(
        self, pixels: Pixels, params: Mapping[str, Any], record_json: str
    ) -> tuple[bytes, bool]:
        """Encode with the record in the ImageDescription tag."""
        return self._encode(pixels, params, _PREFIX + record_json), True

    def _encode(self, pixels: Pixels, params: Mapping[str, Any], description: str | None) -> bytes:
        # Say HxWxC is one RGB(A) page: left to guess, libtiff writes a float32 HxWx3 frame as H
        # pages of Wx3 (it guesses RGB only for uint8/uint16 with 3-4 samples).
        photometric = "rgb" if pixels.ndim == 3 else "minisblack"
        return bytes(
            imagecodecs.tiff_encode(
                pixels,
                photometric=photometric,
                compression=params["compression"],
                level=params["level"],
                predictor=params["predictor"],
                description=description,
            )
        )

    def decode(self, data: bytes) -> Pixels:
        """Decode."""
        return np.asarray(imagecodecs.tiff_decode(data))

    def extract(self, data: bytes) -> str | None:
        """Read the record from ImageDescription."""
        import io

        from PIL import Image

        with Image.open(io.BytesIO(data)) as im:
            desc = im.tag_v2.get(270)  # type: ignore[attr-defined]
        if isinstance(desc, str) and desc.startswith(_PREFIX):
            return desc[len(_PREFIX) :]
        return None

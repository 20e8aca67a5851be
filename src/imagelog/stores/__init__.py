"""Storage backends: a local folder (default), and object stores; ``make_store`` picks by URL."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from ..errors import StoreError
from .base import ObjectInfo, Segment, Store
from .local import LocalStore
from .memory import MemoryStore

__all__ = ["LocalStore", "MemoryStore", "ObjectInfo", "Segment", "Store", "make_store"]


def make_store(
    url: str | os.PathLike[str],
    *,
    create: bool = True,
    storage_options: Mapping[str, Any] | None = None,
) -> Store:
    """Return the store for a path or URL: ``memory://name``, ``s3://bucket/prefix`` or a folder."""
    text = os.fspath(url)
    scheme = text.split("://", 1)[0].lower() if "://" in text else ""
    if scheme in ("", "file"):
        path = text[len("file://") :] if scheme else text
        if not path.strip():
            raise StoreError(
                f"an empty path ({text!r}) names no run; give a folder (or '.')", path=text
            )
        return LocalStore(path, create=create)
    if scheme == "memory":
        return MemoryStore.named(text[len("memory://") :])
    if scheme == "s3":
        try:
            from .s3 import S3Store  # type: ignore[import-not-found,unused-ignore]
        except ImportError as exc:
            raise StoreError(
                f"{text}: S3 support needs the extra: pip install 'imagelog[s3]' ({exc})", path=text
            ) from None
        store: Store = S3Store.from_url(text, create=create, storage_options=storage_options or {})
        return store
    raise StoreError(
        f"unsupported storage URL scheme {scheme!r} in {text!r}; use a path or s3://", path=text
    )

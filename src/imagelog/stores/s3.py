"""A run in an S3-compatible bucket, through obstore; index segments become immutable parts.

Why obstore: it is the fastest Python S3 client we measured (../docs/s3.md: 288-308 small PUTs/s on
one thread against 217-245 for boto3 and 239-241 for s3fs; 169-189 MB/s multipart against 83-96 and
67-72), it is a Rust library with a typed, synchronous API that releases the GIL, so our worker
threads keep many PUTs in flight without an event loop, and it has the same API for GCS and Azure
(``GCSStore``, ``AzureStore``), so another cloud needs a constructor, not a new store. boto3 is
used only where obstore has no API: creating buckets in tests.

Configuration, first match wins: ``storage_options`` passed to ``imagelog.open``/``read``, then the
standard variables ``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``,
``AWS_SESSION_TOKEN``, ``AWS_REGION`` (read by obstore). An ``http://`` endpoint (a local server)
is allowed automatically. ``open()`` probes the bucket (a list, then a small write and delete) so
that wrong credentials or a missing bucket raise ``StoreError`` at once.
"""

from __future__ import annotations

import builtins
import dataclasses
import errno
import hashlib
import os
import re
import secrets
import threading
from collections.abc import Iterable, Iterator, Mapping
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import urlsplit

import obstore
from obstore.exceptions import AlreadyExistsError, PermissionDeniedError, UnauthenticatedError
from obstore.exceptions import BaseError as ObstoreError
from obstore.store import S3Store as _ObS3Store

from ..errors import InvalidSetting, StoreError
from ..settings import parse_bytes, parse_duration
from .base import ObjectCapabilities, ObjectInfo, Store, check_key
from .parts import PartFlusher, PartSegment

if TYPE_CHECKING:
    from obstore.store import ClientConfig, RetryConfig, S3Config

__all__ = ["S3Options", "S3Store"]

# storage_options names (and common aliases from fsspec/boto3) -> obstore S3Config keys
_CONFIG_ALIASES = {
    "endpoint": "endpoint", "endpoint_url": "endpoint", "aws_endpoint_url": "endpoint",
    "access_key_id": "access_key_id", "key": "access_key_id", "aws_access_key_id": "access_key_id",
    "secret_access_key": "secret_access_key", "secret": "secret_access_key",
    "aws_secret_access_key": "secret_access_key",
    "session_token": "token", "token": "token", "aws_session_token": "token",
    "region": "region", "region_name": "region", "aws_region": "region",
    "virtual_hosted_style_request": "virtual_hosted_style_request",
    "skip_signature": "skip_signature", "request_payer": "request_payer",
}  # fmt: skip
_CREDENTIAL_CODES = ("InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied",
                     "ExpiredToken", "InvalidToken", "AuthorizationHeaderMalformed")  # fmt: skip
_CODE_RE = re.compile(r"<Code>(\w+)</Code>")


@dataclasses.dataclass(frozen=True, kw_only=True)
class S3Options:
    """The ``storage_options`` of an ``s3://`` run, parsed once.

    Attributes:
        config: obstore ``S3Config`` values (endpoint, credentials, region ...).
        allow_http: allow a plain-HTTP endpoint (default: when the endpoint is ``http://``).
        concurrency: PUTs in flight (= worker threads when ``workers`` is not set).
        multipart_chunk: objects larger than this are uploaded in parts of this size.
        timeout: the longest one request may take.
        connect_timeout: the longest a connection may take to open.
        max_retries: retries of one request inside obstore (default: 3 for writers, whose spool
            retries for longer, so that a frame is spooled in about a second; 10 for readers).
        retry_timeout: give up retrying one request after this long.
        index_interval: upload an index part at most this many seconds after its first line.
        index_max_lines: upload an index part once it holds this many lines.
        spool: spool to local disk while the store is slow or down (writers only).
        spool_dir: the spool folder (default ``~/.cache/imagelog/spool/<hash of endpoint+url>``).
        spool_max_bytes: the most image bytes one process keeps in the spool.
        drain_timeout: how long ``close()`` waits for the spool to upload while the store answers.
        probe: check credentials and bucket at open.
    """

    config: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    client_options: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    allow_http: bool | None = None
    concurrency: int = 16
    multipart_chunk: int = 8 * 2**20
    timeout: float = 30.0
    connect_timeout: float = 5.0
    max_retries: int | None = None
    retry_timeout: float = 10.0
    index_interval: float = 5.0
    index_max_lines: int = 5000
    spool: bool = True
    spool_dir: str | None = None
    spool_max_bytes: int = 2**30
    drain_timeout: float = 30.0
    probe: bool = True

    @classmethod
    def parse(cls, options: Mapping[str, Any]) -> S3Options:
        """Split ``storage_options`` into obstore config and imagelog options; reject unknown keys."""
        fields = {f.name for f in dataclasses.fields(cls)} - {"config"}
        config: dict[str, Any] = {}
        kw: dict[str, Any] = {}
        for name, value in options.items():
            low = name.lower()
            if low in _CONFIG_ALIASES:
                config[_CONFIG_ALIASES[low]] = value
            elif low == "config" and isinstance(value, Mapping):
                config.update(value)
            elif low in fields:
                kw[low] = value
            else:
                known = ", ".join(sorted({*_CONFIG_ALIASES, *fields, "config"}))
                raise InvalidSetting(f"unknown s3 storage option {name!r}; known: {known}")
        for key in ("spool_max_bytes", "multipart_chunk"):
            if key in kw:
                kw[key] = parse_bytes(kw[key], name=key)
        for key in (
            "timeout",
            "connect_timeout",
            "retry_timeout",
            "index_interval",
            "drain_timeout",
        ):
            if key in kw:
                kw[key] = parse_duration(kw[key], name=key)
        for key in ("concurrency", "index_max_lines", "max_retries"):
            if key in kw and (
                isinstance(kw[key], bool)
                or not isinstance(kw[key], int)
                or kw[key] < (0 if key == "max_retries" else 1)
            ):
                raise InvalidSetting(
                    f"storage option {key} must be a positive int, got {kw[key]!r}"
                )
        if kw.get("multipart_chunk", 5 * 2**20) < 5 * 2**20:
            raise InvalidSetting(
                "storage option multipart_chunk must be at least 5 MiB (an S3 rule)"
            )
        return cls(config=config, **kw)

    @property
    def endpoint(self) -> str | None:
        """The endpoint in use: the option, else ``AWS_ENDPOINT_URL``/``AWS_ENDPOINT``, else None."""
        value = (
            self.config.get("endpoint")
            or os.environ.get("AWS_ENDPOINT_URL")
            or os.environ.get("AWS_ENDPOINT")
        )
        return str(value) if value else None


def _code(exc: BaseException) -> str | None:
    m = _CODE_RE.search(str(exc))
    return m.group(1) if m else None


def _first_line(exc: BaseException) -> str:
    text = str(exc).split(" - Server returned", 1)[0].split("\n", 1)[0]
    return text[:300]


class S3Store(ObjectCapabilities):
    """A run under ``s3://bucket/prefix``: objects through obstore, index segments as parts.

    Example (``probe=False`` skips the check at open that would need a server; the S3 tests
    run against a real SeaweedFS):
        >>> store = S3Store.from_url("s3://runs/line3", create=False, storage_options={
        ...     "endpoint": "http://127.0.0.1:8333", "access_key_id": "k", "secret_access_key": "s",
        ...     "probe": False})
        >>> store.bucket, store.prefix
        ('runs', 'line3')
        >>> store.close()
    """

    def __init__(self, bucket: str, prefix: str = "", *, options: S3Options | None = None) -> None:
        self.options = opts = options or S3Options()
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.url = f"s3://{bucket}/{self.prefix}" if self.prefix else f"s3://{bucket}"
        self.concurrency = opts.concurrency
        config: dict[str, Any] = dict(opts.config)
        endpoint = opts.endpoint
        if endpoint:
            config["endpoint"] = endpoint
        allow_http = opts.allow_http
        if allow_http is None:
            allow_http = bool(endpoint and endpoint.lower().startswith("http://"))
        client: dict[str, Any] = {
            "allow_http": allow_http,
            "timeout": timedelta(seconds=opts.timeout),
            "connect_timeout": timedelta(seconds=opts.connect_timeout),
            "pool_max_idle_per_host": str(max(16, opts.concurrency * 2)),
            **opts.client_options,
        }
        retry = {
            "max_retries": 3 if opts.max_retries is None else opts.max_retries,
            "retry_timeout": timedelta(seconds=opts.retry_timeout),
            "backoff": {
                "init_backoff": timedelta(milliseconds=100),
                "max_backoff": timedelta(seconds=2),
                "base": 2,
            },
        }
        try:
            self._store = _ObS3Store(
                bucket,
                prefix=self.prefix or None,
                config=cast("S3Config", config),
                client_options=cast("ClientConfig", client),
                retry_config=cast("RetryConfig", retry),
            )
        except (ObstoreError, ValueError) as exc:
            raise StoreError(f"{self.url}: bad S3 configuration: {exc}", path=self.url) from None
        self._flusher = PartFlusher()
        self._parts: dict[str, PartSegment] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_url(
        cls, url: str, *, create: bool = True, storage_options: Mapping[str, Any] | None = None
    ) -> Store:
        """Open ``s3://bucket/prefix``; writers get the local spool in front unless ``spool=False``.

        Raises:
            StoreError: wrong credentials, a missing bucket, or (without a spool) no answer.
            InvalidSetting: an unknown or bad storage option.
        """
        parts = urlsplit(url)
        if parts.scheme.lower() != "s3" or not parts.netloc:
            raise StoreError(f"not an s3://bucket/prefix URL: {url!r}", path=url)
        opts = S3Options.parse(storage_options or {})
        spooled = create and opts.spool
        if opts.max_retries is None:
            opts = dataclasses.replace(opts, max_retries=3 if spooled else 10)
        store = cls(parts.netloc, parts.path, options=opts)
        if opts.probe:
            try:
                store.probe(write=create)
            except StoreError as exc:
                if not (spooled and exc.transient):
                    store.close()
                    raise
                import logging

                logging.getLogger("imagelog").warning(
                    "imagelog: %s; spooling to local disk until it answers", exc
                )
        if not spooled:
            return store
        from .spool import SpoolStore

        return SpoolStore(
            store,
            spool_dir=opts.spool_dir or default_spool_dir(store),
            max_bytes=opts.spool_max_bytes,
            index_interval=opts.index_interval,
            index_max_lines=opts.index_max_lines,
            drain_timeout=opts.drain_timeout,
        )

    # -- errors ------------------------------------------------------------------------------------
    def _error(self, exc: BaseException, what: str) -> StoreError:
        """An obstore error as a ``StoreError`` (an ``OSError``) with a reason and ``transient``."""
        code = _code(exc)
        transient = False
        if code in _CREDENTIAL_CODES or isinstance(
            exc, PermissionDeniedError | UnauthenticatedError
        ):
            msg = (f"{self.url}: the S3 credentials were refused ({code or type(exc).__name__}) "
                   f"while {what}; check AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or the "
                   "access_key_id/secret_access_key storage options")  # fmt: skip
            err_no = errno.EACCES
        elif code == "NoSuchBucket":
            msg = (f"{self.url}: bucket {self.bucket!r} does not exist at "
                   f"{self.options.endpoint or 'AWS'}; create it first (imagelog does not create buckets)")  # fmt: skip
            err_no = errno.ENOENT
        else:
            transient = True
            msg = f"{self.url}: cannot reach {self.options.endpoint or 'S3'} while {what}: {_first_line(exc)}"
            err_no = errno.EIO
        err = StoreError(msg, path=self.url, transient=transient)
        err.errno = err_no
        return err

    def probe(self, *, write: bool = True) -> None:
        """List the prefix (and, for writers, put and delete a small object) to check access.

        Raises:
            StoreError: with ``transient=True`` when the server did not answer.
        """
        try:
            stream = obstore.list(self._store, None, chunk_size=1)
            next(iter(stream), None)
        except ObstoreError as exc:
            raise self._error(exc, "listing the bucket") from None
        if write:
            key = f".imagelog-probe/{secrets.token_hex(8)}"
            try:
                obstore.put(self._store, key, b"probe")
            except ObstoreError as exc:
                raise self._error(exc, "writing a probe object") from None
            try:
                obstore.delete(self._store, key)
            except (ObstoreError, OSError):
                pass  # write-only credentials may not delete; the probe object is harmless

    # -- the Store protocol -------------------------------------------------------------------------
    def put(self, key: str, data: bytes, *, sync: bool = False) -> None:
        """PUT one object (multipart above ``multipart_chunk``); an acknowledged PUT is durable."""
        chunk = self.options.multipart_chunk
        check_key(key)
        try:
            obstore.put(self._store, key, data, use_multipart=len(data) > chunk,
                        chunk_size=chunk, max_concurrency=8)  # fmt: skip
        except ObstoreError as exc:
            raise self._error(exc, f"putting {key}") from None

    def put_if_absent(self, key: str, data: bytes) -> bool:
        """A conditional PUT (``If-None-Match: *``); False when the object exists (412)."""
        check_key(key)
        try:
            obstore.put(self._store, key, data, mode="create")
        except AlreadyExistsError:
            return False
        except ObstoreError as exc:
            raise self._error(exc, f"creating {key}") from None
        return True

    def get(self, key: str) -> bytes:
        """GET one object (``FileNotFoundError`` if absent, ``KeyOutsideRun`` if no key of the run)."""
        check_key(key)
        try:
            return bytes(obstore.get(self._store, key).bytes())
        except ObstoreError as exc:
            raise self._error(exc, f"getting {key}") from None

    def read(self, key: str, start: int = 0, end: int | None = None) -> bytes:
        """A ranged GET (past the end: the bytes there are)."""
        try:
            size = self.size(key)
            end = size if end is None else min(end, size)
            if start >= end:
                return b""
            return bytes(obstore.get_range(self._store, key, start=start, end=end))
        except ObstoreError as exc:
            raise self._error(exc, f"getting {key}") from None

    def size(self, key: str) -> int:
        """HEAD one object: its size."""
        try:
            return int(obstore.head(self._store, key)["size"])
        except ObstoreError as exc:
            raise self._error(exc, f"checking {key}") from None

    def exists(self, key: str) -> bool:
        """HEAD one object."""
        check_key(key)
        try:
            obstore.head(self._store, key)
        except FileNotFoundError:
            return False
        except ObstoreError as exc:
            raise self._error(exc, f"checking {key}") from None
        return True

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Objects whose key starts with ``prefix`` (a folder or a name prefix), in key order."""
        folder = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        try:
            for batch in obstore.list(self._store, folder or None, chunk_size=1000):
                for meta in batch:
                    path = meta["path"]
                    if path.startswith(prefix) and not path.startswith(".imagelog-probe/"):
                        yield ObjectInfo(path, int(meta["size"]), meta["last_modified"].timestamp())
        except ObstoreError as exc:
            raise self._error(exc, f"listing {prefix or '/'}") from None

    def delete(self, keys: Iterable[str]) -> None:
        """Delete objects in batches of 1000 (missing keys are not an error on S3).

        ``KeyOutsideRun`` for a key that is not one of the run's: nothing is deleted.
        """
        batch: builtins.list[str] = []
        for key in [check_key(key) for key in keys]:
            batch.append(key)
            if len(batch) == 1000:
                self._delete(batch)
                batch = []
        if batch:
            self._delete(batch)

    def _delete(self, keys: builtins.list[str]) -> None:
        try:
            obstore.delete(self._store, keys)
        except FileNotFoundError:
            pass
        except ObstoreError as exc:
            raise self._error(exc, f"deleting {len(keys)} object(s)") from None

    def open_segment(self, key: str) -> PartSegment:
        """A segment uploaded as immutable parts (no append on S3); see ``stores/parts.py``."""
        return self.part_segment(key, self.put, None)

    def part_segment(self, key: str, put: Any, journal_dir: Path | None) -> PartSegment:
        """A part segment with this store's interval and line limit, flushed by its thread."""
        with self._lock:
            previous = self._parts.get(key)
            first = previous.next_part if previous is not None else 0
        segment = PartSegment(
            put, key,
            interval=self.options.index_interval,
            max_lines=self.options.index_max_lines,
            journal_dir=journal_dir,
            first_part=first,
        )  # fmt: skip
        with self._lock:
            # a segment opened again (by this process) continues the numbering of the last one
            self._parts[key] = segment
        self._flusher.add(segment)
        return segment

    def close(self) -> None:
        """Stop the index-part thread (open segments upload their parts when closed)."""
        self._flusher.stop()


def default_spool_dir(store: S3Store) -> Path:
    """``$XDG_CACHE_HOME/imagelog/spool/<16 hex of sha256(endpoint + url)>`` (``~/.cache``)."""
    cache = Path(os.environ.get("XDG_CACHE_HOME") or "~/.cache").expanduser()
    digest = hashlib.sha256(f"{store.options.endpoint or ''}|{store.url}".encode()).hexdigest()
    return cache / "imagelog" / "spool" / digest[:16]

"""The viewer's HTTP side: a Starlette app on uvicorn, behind a random access token.

Routes (all need the token: ``?token=`` once, then the cookie it sets, or ``Authorization:
Bearer``): ``/`` the page; ``/static/*`` its files; ``/api/*`` JSON; ``/thumb/ID`` a thumbnail;
``/display/ID`` the frame as a browser shows it; ``/run/PATH`` an image file of the run, as
stored (only paths the index names). Every file is read through the run's store, whose keys
cannot lead out of the run (``KeyOutsideRun``: a 404 here). docs/viewer.md lists every check.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import mimetypes
import secrets
import sys
import threading
import urllib.parse
import webbrowser
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import (
    FileResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
)
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from .. import exif as exif_mod
from .._shards import member_name, read_file
from ..errors import CodecError, KeyOutsideRun
from ..record import image_ref
from ..run import Run, read
from ..stores.base import check_key
from ._params import (
    FILTER_PARAMS as FILTER_PARAMS,
)
from ._params import (
    MAX_ROWS,
    _BadRequest,
    _filters,
    _listen,
    _number,
    _params,
    _time,
    _whole,
)
from .index import LiveIndex
from .thumbs import (
    BROWSER_FORMATS,
    THUMB_SIZE,
    ThumbnailCache,
    default_cache_dir,
    encode_display,
    to_display,
    value_range,
)

__all__ = ["Viewer"]

STATIC = Path(str(resources.files("imagelog.viewer") / "static"))
#: Headers on every response: no page the viewer links to learns its address (token or not).
SAFE_HEADERS = [(b"referrer-policy", b"no-referrer"), (b"x-content-type-options", b"nosniff")]
#: Names a browser on this machine reaches a loopback server by (besides the bound address).
LOCAL_NAMES = frozenset({"localhost", "127.0.0.1", "[::1]"})
#: Longest request line and headers (bytes): a longer URL is answered 414, not dropped.
MAX_REQUEST_BYTES = 1 << 20
#: Longest URL (path and query) the server reads; the page's own are far shorter.
MAX_URL_BYTES = 64 * 1024


def _host_name(value: str) -> str:
    """The name part of a Host header (``[::1]:8080`` -> ``[::1]``), lower case."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[: value.find("]") + 1] if "]" in value else value
    return value.rpartition(":")[0] if ":" in value else value


class _Gate:
    """ASGI middleware in front of every route.

    In order: a Host header that names this machine (unless ``hosts`` is None: ``--allow-remote``),
    then the token (``?token=``, the cookie, or ``Authorization: Bearer``). The page opened with
    ``?token=`` is answered with a redirect to the same address without it, setting an
    ``HttpOnly``, ``SameSite=Strict`` cookie; other routes given ``?token=`` set it too. Every
    response, refusals included, carries ``SAFE_HEADERS``.
    """

    def __init__(self, app: ASGIApp, token: str, *, cookie: str, hosts: frozenset[str] | None):
        self.app = app
        self.token = token
        self.cookie = cookie
        self.hosts = hosts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        set_cookie = False

        async def send_safe(message: Any) -> None:
            if message["type"] == "http.response.start":
                extra = list(SAFE_HEADERS)
                if set_cookie:
                    value = f"{self.cookie}={self.token}; Path=/; HttpOnly; SameSite=Strict"
                    extra.append((b"set-cookie", value.encode()))
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        request = Request(scope)
        if len(scope.get("raw_path", b"")) + len(scope.get("query_string", b"")) > MAX_URL_BYTES:
            await PlainTextResponse("414: the address is too long", 414)(scope, receive, send_safe)
            return
        if self.hosts is not None:
            host = _host_name(request.headers.get("host", ""))
            if host not in self.hosts:
                msg = f"403: Host {host!r} is not this machine (imagelog view --allow-remote serves others)"
                await PlainTextResponse(msg, 403)(scope, receive, send_safe)
                return
        given = request.query_params.get("token")
        from_query = given is not None
        if given is None:
            given = request.cookies.get(self.cookie)
        if given is None:
            auth = request.headers.get("authorization", "")
            given = auth[7:] if auth.lower().startswith("bearer ") else None
        if given is None or not secrets.compare_digest(given.encode(), self.token.encode()):
            await PlainTextResponse("403: a valid token is required", 403)(
                scope, receive, send_safe
            )
            return
        set_cookie = from_query
        if from_query and scope["path"] == "/" and scope["method"] in ("GET", "HEAD"):
            rest = [(k, v) for k, v in request.query_params.multi_items() if k != "token"]
            target = "/?" + urllib.parse.urlencode(rest) if rest else "/"
            await RedirectResponse(target, 303)(scope, receive, send_safe)
            return
        await self.app(scope, receive, send_safe)


class Viewer:
    """``imagelog view``: serves one run to a browser on ``host:port`` with a random token.

    Example:
        >>> import numpy as np, imagelog, tempfile, urllib.request
        >>> path = tempfile.mkdtemp()
        >>> with imagelog.open(path, format="png") as log:
        ...     _ = log.log(np.zeros((4, 4), np.uint8), source="cam1")
        >>> with Viewer(path, cache_dir=tempfile.mkdtemp()) as v:
        ...     v.index.refresh() >= 0
        ...     json.load(urllib.request.urlopen(v.api_url("/api/count")))["count"]
        True
        1
    """

    def __init__(
        self,
        run: str | Run,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        token: str | None = None,
        cache_dir: str | Path | None = None,
        cache_bytes: int = 512 * 2**20,
        poll: float = 0.25,
        allow_remote: bool = False,
    ) -> None:
        if not _is_loopback(host) and not allow_remote:
            raise ValueError(
                f"--host {host} would let other machines reach the run; pass --allow-remote "
                "to do so on purpose"
            )
        if isinstance(port, bool) or not 0 <= port <= 65535:
            raise ValueError(f"--port must be from 0 (any free port) to 65535, got {port}")
        self.run = run if isinstance(run, Run) else read(run)
        self.token = token or secrets.token_urlsafe(24)
        self.host = host
        self._sock = _listen(host, port)
        self.port = int(self._sock.getsockname()[1])
        try:
            cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
            self.cache_dir = cache
            self.index = LiveIndex(self.run, db_dir=_mkdir(cache / "index"))
            self.thumbs = ThumbnailCache(cache / "thumbs", max_bytes=cache_bytes)
        except BaseException:
            self._sock.close()
            raise
        # an object store is listed at most once a second (each look is a LIST request)
        self.poll = poll if self.run.store.local_root is not None else max(poll, 1.0)
        bound = f"[{host}]" if ":" in host else host
        self._hosts = None if allow_remote else LOCAL_NAMES | {bound.lower()}
        self.app = self._build_app()
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------
    @property
    def url(self) -> str:
        """The page's address, token included."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/?token={self.token}"

    def api_url(self, path: str) -> str:
        """The address of ``path`` on this server, token included."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        sep = "&" if "?" in path else "?"
        return f"http://{host}:{self.port}{path}{sep}token={self.token}"

    def _make_server(self) -> uvicorn.Server:
        # log_config=None: uvicorn leaves logging alone (no handlers installed in the host process)
        # h11 with room for a long URL, so that the gate answers it (414) instead of h11
        # closing the connection while the client is still sending
        config = uvicorn.Config(self.app, log_level="warning", lifespan="off", log_config=None,
                                http="h11", h11_max_incomplete_event_size=MAX_REQUEST_BYTES)  # fmt: skip
        return uvicorn.Server(config)

    def start(self) -> Viewer:
        """Serve in a background thread (for tests and notebooks); ``stop()`` ends it."""
        self.index.start(self.poll)
        self._server = self._make_server()
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._sock]}, name="imagelog-view-http"
        )
        self._thread.start()
        return self

    def serve_forever(self, *, open_browser: bool = True) -> None:
        """Serve in this thread until Ctrl-C."""
        self.index.start(self.poll)
        if open_browser:
            threading.Timer(0.5, webbrowser.open, [self.url]).start()
        self._server = self._make_server()
        try:
            self._server.run(sockets=[self._sock])
        finally:
            self.close()

    def stop(self) -> None:
        """Stop serving and release everything."""
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self.close()

    def close(self) -> None:
        """Release the index, the thumbnail workers and the socket (idempotent)."""
        if getattr(self, "_closed", False):
            return
        self._closed = True
        self.index.close()
        self.thumbs.close()
        self._sock.close()

    def __enter__(self) -> Viewer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- the app ---------------------------------------------------------------------------
    def _build_app(self) -> ASGIApp:
        routes = [
            Route("/", self._page),
            Route("/api/summary", self._summary),
            Route("/api/count", self._count),
            Route("/api/frames", self._frames),
            Route("/api/timeline", self._timeline),
            Route("/api/position", self._position),
            Route("/api/record/{id}", self._record),
            Route("/thumb/{id}", self._thumb),
            Route("/display/{id}", self._display),
            Route("/run/{path:path}", self._file),
            Mount("/static", StaticFiles(directory=STATIC, follow_symlink=False), name="static"),
        ]
        app = Starlette(routes=routes, exception_handlers={_BadRequest: _bad_request,
                                                           ValueError: _bad_request})  # fmt: skip
        cookie = f"imagelog_token_{self.port}"  # cookies are per host, not per port
        return _Gate(app, self.token, cookie=cookie, hosts=self._hosts)

    def _page(self, request: Request) -> Response:
        html = (STATIC / "index.html").read_text(encoding="utf-8")
        return Response(html, media_type="text/html", headers={"Cache-Control": "no-store"})

    def _summary(self, request: Request) -> JSONResponse:
        _params(request, ())
        idx = self.index
        return JSONResponse(
            {
                "run": self.run.url,
                "sources": idx.sources(),
                "rows": idx.rows,
                "loading": idx.loading,
                "version": idx.version,
            }
        )

    def _count(self, request: Request) -> JSONResponse:
        f = _filters(request, ())
        return JSONResponse(
            {
                "count": self.index.count(f),
                "version": self.index.version,
                "loading": self.index.loading,
            }
        )

    def _frames(self, request: Request) -> JSONResponse:
        f = _filters(request, ("offset", "limit", "total"))
        q = request.query_params
        offset = _whole(q, "offset", 0, 0, MAX_ROWS)
        limit = _whole(q, "limit", 200, 1, 1000)
        total = _whole(q, "total", None, 0, MAX_ROWS)
        page = self.index.page(f, offset, limit, total=total)
        return JSONResponse({"offset": offset, "frames": page})

    def _timeline(self, request: Request) -> JSONResponse:
        f = _filters(request, ("buckets",))
        buckets = _whole(request.query_params, "buckets", 240, 10, 2000)
        return JSONResponse(self.index.timeline(f, buckets))

    def _position(self, request: Request) -> JSONResponse:
        f = _filters(request, ("ts",))
        ts = _time(request.query_params, "ts")
        if ts is None:
            raise _BadRequest("ts is required: a time, e.g. 2026-11-30T01:43:00Z")
        return JSONResponse({"index": self.index.position(f, ts)})

    def _row(self, record_id: str) -> dict[str, Any]:
        """The index row of a stored image by id; its path must be a key of the run."""
        row = self.index.row(record_id)
        if row is None or not row.get("path"):
            raise _NotFound(f"no record {record_id!r} with an image in this run")
        check_key(row["path"])
        return row

    @staticmethod
    def _ref(row: dict[str, Any]) -> dict[str, Any]:
        """What ``Run.load`` reads of a row's record: its file (a shard member's place too)."""
        offset = row.get("offset")
        return image_ref(str(row["path"]), image_id=str(row["id"]), fmt=str(row["format"]),
                         dtype=str(row["dtype"]), channels=int(row["channels"] or 0),
                         encoder=row["encoder"], offset=None if offset is None else int(offset),
                         size=None if offset is None else int(row["bytes"] or 0))  # fmt: skip

    def _bytes(self, row: dict[str, Any]) -> bytes:
        """A row's stored bytes (``Run.read_bytes``: through the store; a member: one range)."""
        return self.run.read_bytes(self._ref(row))

    def _load(self, row: dict[str, Any]) -> np.ndarray[Any, Any]:
        """Decode a row's image (``Run.load``, which reads through the store)."""
        return self.run.load(self._ref(row))

    def _record(self, request: Request) -> Response:
        _params(request, ())
        try:
            row = self._row(request.path_params["id"])
        except (_NotFound, KeyOutsideRun) as exc:
            return PlainTextResponse(f"404: {exc}", 404)
        try:
            record = json.loads(self.index.line(row))
        except (OSError, ValueError) as exc:
            return PlainTextResponse(f"422: cannot read the record's line: {exc}", 422)
        out: dict[str, Any] = {
            "record": record,
            "exif": record.get("exif") or {},
            "neighbours": self.index.neighbours(row["id"]),
            "file": "/run/"
            + urllib.parse.quote(str(row["path"]))
            + ("" if row.get("offset") is None else f"?offset={int(row['offset'])}"),
            "display": "/display/" + urllib.parse.quote(str(row["id"]), safe=""),
            "window": None,
            "error": None,
        }
        try:
            if not out["exif"] and row["format"] in ("jpeg", "webp", "png"):
                out["exif"] = exif_mod.read(self._bytes(row), str(row["format"]))
            if row["dtype"] not in ("uint8", "bool"):
                arr = self._load(row)
                lo, hi = value_range(arr)
                finite = arr[np.isfinite(arr)] if arr.dtype.kind == "f" else arr
                out["window"] = {
                    "lo": lo,
                    "hi": hi,
                    "min": float(finite.min()) if finite.size else 0.0,
                    "max": float(finite.max()) if finite.size else 1.0,
                }
        except _UNSERVABLE as exc:
            out["exif"], out["error"] = {}, _why(exc)
        return JSONResponse(out)

    def _make_thumb(self, row: dict[str, Any]) -> bytes:
        if row["format"] == "jpeg" and row["dtype"] == "uint8":
            import io

            from PIL import Image

            with Image.open(io.BytesIO(self._bytes(row))) as im:
                im.draft("RGB", (THUMB_SIZE, THUMB_SIZE))
                im.thumbnail((THUMB_SIZE, THUMB_SIZE))
                out = io.BytesIO()
                im.convert("RGB").save(out, "JPEG", quality=80)
                return out.getvalue()
        return encode_display(to_display(self._load(row)), fmt="jpeg", max_side=THUMB_SIZE)

    async def _thumb(self, request: Request) -> Response:
        _params(request, ())
        try:
            row = await asyncio.to_thread(self._row, request.path_params["id"])
        except (_NotFound, KeyOutsideRun) as exc:
            return PlainTextResponse(f"404: {exc}", 404)
        at = "" if row.get("offset") is None else f"@{row['offset']}"  # members share a path
        target = self.thumbs.key(self.run.url, f"{row['path']}{at}", int(row["bytes"] or 0))
        try:
            path = await asyncio.wrap_future(self.thumbs.get(target, lambda: self._make_thumb(row)))
        except _UNSERVABLE as exc:
            return _unservable(exc)
        except Exception as exc:  # undecodable file: say so in the grid, keep serving
            return PlainTextResponse(f"422: cannot make a thumbnail: {exc}", 422)
        return FileResponse(
            path, media_type="image/jpeg", headers={"Cache-Control": "max-age=3600"}
        )

    async def _display(self, request: Request) -> Response:
        q = _params(request, ("lo", "hi"))
        lo, hi = _number(q, "lo"), _number(q, "hi")
        try:
            row = await asyncio.to_thread(self._row, request.path_params["id"])
        except (_NotFound, KeyOutsideRun) as exc:
            return PlainTextResponse(f"404: {exc}", 404)
        as_stored = row["format"] in BROWSER_FORMATS and row["dtype"] == "uint8" and lo is None

        def render() -> bytes:
            if as_stored:
                return self._bytes(row)
            return encode_display(to_display(self._load(row), lo, hi))

        try:
            data = await asyncio.to_thread(render)
        except _UNSERVABLE as exc:
            return _unservable(exc)
        except Exception as exc:  # undecodable file
            return PlainTextResponse(f"422: cannot decode the image: {exc}", 422)
        media = f"image/{row['format']}" if as_stored else "image/png"
        return Response(data, media_type=media)

    def _file(self, request: Request) -> Response:
        q = _params(request, ("offset",))
        rel = request.path_params["path"]
        try:
            check_key(rel)
            if not self.index.owns(rel):
                raise _NotFound(f"no record of this run names {rel!r}")
            if q.get("offset"):  # a member of a shard: only one the index names
                return self._member(rel, q["offset"])
            data = self.run.store.get(rel)
        except _NotFound as exc:
            return _unservable(exc)
        except _UNSERVABLE as exc:
            return _unservable(exc)
        name = rel.rsplit("/", 1)[-1]
        media = mimetypes.guess_type(name)[0] or "application/octet-stream"
        disp = f"attachment; filename*=UTF-8''{urllib.parse.quote(name)}"
        return Response(data, media_type=media, headers={"Content-Disposition": disp})

    def _member(self, rel: str, offset: str) -> Response:
        """``/run/<shard>?offset=N``: the image stored at byte N of a shard, as its own file."""
        found = self.index.member(rel, int(offset)) if offset.isdigit() else None
        if found is None:
            return PlainTextResponse("404: not a file of this run", 404)
        file = {"path": rel, "offset": int(offset), "size": found["bytes"]}
        name = member_name(self.run.store, rel, int(offset)) or f"{found['id']}.{found['format']}"
        media = mimetypes.guess_type(name)[0] or "application/octet-stream"
        disp = f"attachment; filename*=UTF-8''{urllib.parse.quote(name)}"
        data = read_file(self.run.store, file)
        return Response(data, media_type=media, headers={"Content-Disposition": disp})


#: What reading a record's file can raise when the file cannot be served: it is outside the
#: run (``KeyOutsideRun``), gone, not a regular file, or not the image the record says.
_UNSERVABLE: tuple[type[Exception], ...] = (OSError, CodecError, ValueError, TypeError)


class _NotFound(LookupError):
    pass


def _why(exc: BaseException) -> str:
    if isinstance(exc, FileNotFoundError):  # KeyOutsideRun included
        return f"not a file of this run: {exc}"
    return f"cannot read the image: {exc}"


def _unservable(exc: BaseException) -> Response:
    if isinstance(exc, _NotFound | FileNotFoundError | IsADirectoryError | PermissionError):
        return PlainTextResponse(f"404: {_why(exc)}", 404)
    return PlainTextResponse(f"422: {_why(exc)}", 422)


async def _bad_request(request: Request, exc: Exception) -> Response:
    return PlainTextResponse(f"400: {exc}", 400)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def main_serve(
    run: str,
    *,
    host: str,
    port: int,
    open_browser: bool,
    allow_remote: bool,
    cache_dir: str | None,
) -> int:
    """What ``imagelog view`` does: serve, print the address, open it."""
    viewer = Viewer(run, host=host, port=port, allow_remote=allow_remote, cache_dir=cache_dir)
    if not _is_loopback(host):
        print(
            f"warning: serving {viewer.run.url} on {host}: anyone who can reach this machine "
            "and has the token can read the run",
            file=sys.stderr,
        )
    print(f"imagelog view: {viewer.run.url}\n  {viewer.url}\n(Ctrl-C stops)", flush=True)
    try:
        viewer.serve_forever(open_browser=open_browser)
    except KeyboardInterrupt:
        pass
    return 0

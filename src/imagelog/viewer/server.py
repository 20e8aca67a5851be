"""The viewer's HTTP side: a Starlette app on uvicorn, behind a random access token.

Routes (all need the token: ``?token=`` once, then the cookie it sets, or ``Authorization:
Bearer``): ``/`` the page; ``/static/*`` its files; ``/api/*`` JSON; ``/thumb/ID`` a thumbnail;
``/display/ID`` the frame as a browser shows it; ``/run/PATH`` an image file of the run, as
stored (only paths the index names, resolved inside the run folder).
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import mimetypes
import secrets
import socket
import sys
import threading
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
    Response,
)
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from .. import exif as exif_mod
from .._shards import member_name, read_file
from ..run import Run, read
from .index import Filters, LiveIndex
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

COOKIE = "imagelog_token"
STATIC = Path(str(resources.files("imagelog.viewer") / "static"))


class _TokenGate:
    """ASGI middleware: every request must carry the token; a good ``?token=`` sets a cookie."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self.token = token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        given = request.query_params.get("token")
        from_query = given is not None
        if given is None:
            given = request.cookies.get(COOKIE)
        if given is None:
            auth = request.headers.get("authorization", "")
            given = auth[7:] if auth.lower().startswith("bearer ") else None
        if given is None or not secrets.compare_digest(given.encode(), self.token.encode()):
            await PlainTextResponse("403: a valid token is required", 403)(scope, receive, send)
            return
        if not from_query:
            await self.app(scope, receive, send)
            return

        async def send_with_cookie(message: Any) -> None:
            if message["type"] == "http.response.start":
                cookie = f"{COOKIE}={self.token}; Path=/; HttpOnly; SameSite=Strict"
                message["headers"] = [*message.get("headers", []), (b"set-cookie", cookie.encode())]
            await send(message)

        await self.app(scope, receive, send_with_cookie)


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
        self.run = run if isinstance(run, Run) else read(run)
        self.token = token or secrets.token_urlsafe(24)
        cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        self.cache_dir = cache
        self.index = LiveIndex(self.run, db_dir=_mkdir(cache / "index"))
        self.thumbs = ThumbnailCache(cache / "thumbs", max_bytes=cache_bytes)
        # an object store is listed at most once a second (each look is a LIST request)
        root = self.run.store.local_root
        self.poll = poll if root is not None else max(poll, 1.0)
        self._root = root.resolve() if root is not None else None
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._sock = socket.socket(family, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((host, port))
        self._sock.listen(128)
        self.host = host
        self.port = int(self._sock.getsockname()[1])
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
        config = uvicorn.Config(self.app, log_level="warning", lifespan="off", log_config=None)
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
        app = Starlette(
            routes=routes, exception_handlers={ValueError: _bad_request, _Refused: _refused}
        )
        return _TokenGate(app, self.token)

    def _page(self, request: Request) -> Response:
        html = (STATIC / "index.html").read_text(encoding="utf-8")
        return Response(html, media_type="text/html", headers={"Cache-Control": "no-store"})

    def _summary(self, request: Request) -> JSONResponse:
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
        f = Filters.from_query(request.query_params)
        return JSONResponse(
            {
                "count": self.index.count(f),
                "version": self.index.version,
                "loading": self.index.loading,
            }
        )

    def _frames(self, request: Request) -> JSONResponse:
        f = Filters.from_query(request.query_params)
        offset = max(0, int(request.query_params.get("offset", 0)))
        limit = min(1000, max(1, int(request.query_params.get("limit", 200))))
        total = request.query_params.get("total")
        page = self.index.page(f, offset, limit, total=int(total) if total else None)
        return JSONResponse({"offset": offset, "frames": page})

    def _timeline(self, request: Request) -> JSONResponse:
        f = Filters.from_query(request.query_params)
        buckets = min(2000, max(10, int(request.query_params.get("buckets", 240))))
        return JSONResponse(self.index.timeline(f, buckets))

    def _position(self, request: Request) -> JSONResponse:
        f = Filters.from_query(request.query_params)
        ts = request.query_params.get("ts", "")
        return JSONResponse({"index": self.index.position(f, ts)})

    def _row(self, record_id: str) -> dict[str, Any]:
        row = self.index.row(record_id)
        if row is None or not row.get("path"):
            raise _NotFound(record_id)
        return row

    def _record(self, request: Request) -> Response:
        try:
            row = self._row(request.path_params["id"])
        except _NotFound:
            return PlainTextResponse("404: no such record", 404)
        record = json.loads(self.index.line(row))
        exif = record.get("exif") or {}
        if not exif and row["format"] in ("jpeg", "webp", "png"):
            try:
                exif = exif_mod.read(self._read(row), str(row["format"]))
            except OSError:
                exif = {}
        out: dict[str, Any] = {
            "record": record,
            "exif": exif,
            "neighbours": self.index.neighbours(row["id"]),
            "file": f"/run/{row['path']}"
            + ("" if row.get("offset") is None else f"?offset={row['offset']}"),
            "display": f"/display/{row['id']}",
            "window": None,
        }
        if row["dtype"] not in ("uint8", "bool"):
            arr = self.run.load(_as_record(row))
            lo, hi = value_range(arr)
            finite = arr[np.isfinite(arr)] if arr.dtype.kind == "f" else arr
            out["window"] = {
                "lo": lo,
                "hi": hi,
                "min": float(finite.min()) if finite.size else 0.0,
                "max": float(finite.max()) if finite.size else 1.0,
            }
        return JSONResponse(out)

    def _read(self, row: dict[str, Any]) -> bytes:
        path = self._owned_path(str(row["path"]))
        if row.get("offset") is not None:  # a shard member: one ranged read
            return read_file(self.run.store, _as_record(row)["file"])
        if path is not None:
            return path.read_bytes()
        return self.run.store.get(str(row["path"]))

    def _make_thumb(self, row: dict[str, Any]) -> bytes:
        if row["format"] == "jpeg" and row["dtype"] == "uint8":
            import io

            from PIL import Image

            with Image.open(io.BytesIO(self._read(row))) as im:
                im.draft("RGB", (THUMB_SIZE, THUMB_SIZE))
                im.thumbnail((THUMB_SIZE, THUMB_SIZE))
                out = io.BytesIO()
                im.convert("RGB").save(out, "JPEG", quality=80)
                return out.getvalue()
        arr = self.run.load(_as_record(row))
        return encode_display(to_display(arr), fmt="jpeg", max_side=THUMB_SIZE)

    async def _thumb(self, request: Request) -> Response:
        try:
            row = await asyncio.to_thread(self._row, request.path_params["id"])
        except _NotFound:
            return PlainTextResponse("404: no such record", 404)
        at = "" if row.get("offset") is None else f"@{row['offset']}"  # members share a path
        target = self.thumbs.key(self.run.url, f"{row['path']}{at}", int(row["bytes"] or 0))
        try:
            path = await asyncio.wrap_future(self.thumbs.get(target, lambda: self._make_thumb(row)))
        except _Refused:
            return PlainTextResponse("404: not a file of this run", 404)
        except Exception as exc:  # undecodable file: say so in the grid, keep serving
            return PlainTextResponse(f"422: cannot make a thumbnail: {exc}", 422)
        return FileResponse(
            path, media_type="image/jpeg", headers={"Cache-Control": "max-age=3600"}
        )

    async def _display(self, request: Request) -> Response:
        try:
            row = await asyncio.to_thread(self._row, request.path_params["id"])
        except _NotFound:
            return PlainTextResponse("404: no such record", 404)
        q = request.query_params
        lo = float(q["lo"]) if q.get("lo") else None
        hi = float(q["hi"]) if q.get("hi") else None
        if row["format"] in BROWSER_FORMATS and row["dtype"] == "uint8" and lo is None:
            path = self._owned_path(str(row["path"]))
            if path is not None and row.get("offset") is None:  # a shard member: decoded below
                return FileResponse(path, media_type=f"image/{row['format']}")

        def render() -> bytes:
            return encode_display(to_display(self.run.load(_as_record(row)), lo, hi))

        data = await asyncio.to_thread(render)
        return Response(data, media_type="image/png")

    def _owned_path(self, rel: str) -> Path | None:
        """The local file of an image path the index names, if it resolves inside the run."""
        if self._root is None:
            return None
        if not rel or rel.startswith(("/", "\\")) or "\\" in rel or "\0" in rel:
            raise _Refused(rel)
        if any(part in ("", ".", "..") for part in rel.split("/")):
            raise _Refused(rel)
        if not self.index.owns(rel):
            raise _Refused(rel)
        path = (self._root / rel).resolve()
        if not path.is_relative_to(self._root) or not path.is_file():
            raise _Refused(rel)
        return path

    def _file(self, request: Request) -> Response:
        rel = request.path_params["path"]
        try:
            path = self._owned_path(rel)
        except _Refused:
            return PlainTextResponse("404: not a file of this run", 404)
        name = rel.rsplit("/", 1)[-1]
        if request.query_params.get("offset"):  # a member of a shard: only one the index names
            return self._member(rel, request.query_params["offset"])
        media = mimetypes.guess_type(name)[0] or "application/octet-stream"
        if path is not None:
            return FileResponse(path, media_type=media, filename=name)
        if not self.index.owns(rel):
            return PlainTextResponse("404: not a file of this run", 404)
        data = self.run.store.get(rel)
        disp = f'attachment; filename="{name}"'
        return Response(data, media_type=media, headers={"Content-Disposition": disp})

    def _member(self, rel: str, offset: str) -> Response:
        """``/run/<shard>?offset=N``: the image stored at byte N of a shard, as its own file."""
        found = self.index.member(rel, int(offset)) if offset.isdigit() else None
        if found is None:
            return PlainTextResponse("404: not a file of this run", 404)
        file = {"path": rel, "offset": int(offset), "size": found["bytes"]}
        name = member_name(self.run.store, rel, int(offset)) or f"{found['id']}.{found['format']}"
        media = mimetypes.guess_type(name)[0] or "application/octet-stream"
        disp = f'attachment; filename="{name}"'
        data = read_file(self.run.store, file)
        return Response(data, media_type=media, headers={"Content-Disposition": disp})


class _NotFound(LookupError):
    pass


class _Refused(LookupError):
    pass


async def _bad_request(request: Request, exc: Exception) -> Response:
    return PlainTextResponse(f"400: {exc}", 400)


async def _refused(request: Request, exc: Exception) -> Response:
    return PlainTextResponse("404: not a file of this run", 404)


def _as_record(row: dict[str, Any]) -> dict[str, Any]:
    """The parts of a record ``Run.load`` reads, from an index row."""
    return {
        "file": {"path": row["path"]}
        if row.get("offset") is None
        else {"path": row["path"], "offset": row["offset"], "size": row["bytes"]},
        "image": {
            "id": row["id"],
            "format": row["format"],
            "dtype": row["dtype"],
            "channels": row["channels"],
            "encoder": {"name": row["encoder"]},
        },
    }


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

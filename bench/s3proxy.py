"""A counting HTTP proxy in front of an S3 server: what requests a reader sends, by kind.

Requests are forwarded as received (the ``Host`` header included, so signatures still match) and
each is recorded as ``(method, path, query)``. ``lists(prefix)`` counts the LIST requests (GET on
a bucket with ``list-type`` or ``prefix``) whose prefix starts with ``prefix``. Dev-only, for the
fleet bench and the S3 tests.
"""

from __future__ import annotations

import http.client
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

__all__ = ["CountingProxy"]

_HOP = {"connection", "keep-alive", "transfer-encoding", "proxy-connection", "upgrade"}


class CountingProxy:
    """Forward to ``upstream`` (``http://127.0.0.1:PORT``) from a port of its own on loopback."""

    def __init__(self, upstream: str) -> None:
        parts = urlsplit(upstream)
        self.upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.requests: list[tuple[str, str, str]] = []
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _forward(self) -> None:
                split = urlsplit(self.path)
                with proxy._lock:
                    proxy.requests.append((self.command, split.path, split.query))
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP}
                conn = http.client.HTTPConnection(*proxy.upstream, timeout=120)
                try:
                    conn.request(self.command, self.path, body=body, headers=headers)
                    resp = conn.getresponse()
                    data = resp.read()
                finally:
                    conn.close()
                self.send_response_only(resp.status, resp.reason)
                for k, v in resp.getheaders():
                    if k.lower() not in _HOP and k.lower() != "content-length":
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _forward

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="s3-counting-proxy", daemon=True
        )

    @property
    def endpoint(self) -> str:
        """The proxy's URL, to give readers as their S3 endpoint."""
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> CountingProxy:
        """Serve in a thread; returns self."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the port."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(10)

    def clear(self) -> None:
        """Forget the requests seen so far."""
        with self._lock:
            self.requests.clear()

    def lists(self, prefix: str = "") -> list[str]:
        """The prefixes of LIST requests whose prefix (``bucket/prefix``) starts with ``prefix``."""
        out = []
        with self._lock:
            seen = list(self.requests)
        for method, path, query in seen:
            q = parse_qs(query, keep_blank_values=True)
            if method != "GET" or not ("list-type" in q or "prefix" in q or "delimiter" in q):
                continue
            bucket = path.strip("/").split("/", 1)[0]
            listed = f"{bucket}/{q.get('prefix', [''])[0]}"
            if listed.startswith(prefix):
                out.append(listed)
        return out

    def gets(self, prefix: str = "") -> int:
        """How many GETs of objects (not LISTs) under ``/prefix`` the server received."""
        with self._lock:
            seen = list(self.requests)
        return sum(
            1
            for method, path, query in seen
            if method == "GET" and path.lstrip("/").startswith(prefix) and "list-type" not in query
        )

    def __enter__(self) -> CountingProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

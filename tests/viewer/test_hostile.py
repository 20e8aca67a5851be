"""The viewer on a run made by hand to hurt it: every route stays up, answers 4xx for what it
cannot serve, and never serves a byte from outside the run.

The run holds two good frames, then index lines whose ``file.path`` leads outside it (``..``,
absolute, a symlink, a symlinked folder, backslashes, NUL), names a FIFO or a folder, and lines
that are damaged (20 MB long, not UTF-8, torn JSON, not an object, duplicate ids, schema 99).
Beside the run lie real images that a careless server would decode and serve.
"""

from __future__ import annotations

import copy
import io
import json
import logging
import os
import socket
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

import imagelog
from imagelog import cli
from imagelog.errors import KeyOutsideRun
from imagelog.layout import segment_key
from imagelog.stores import LocalStore, MemoryStore
from imagelog.viewer import Viewer

from .test_http import raw_get

SECRET_TEXT = b"top secret, outside the run"
OUTSIDE_8 = 77  # the value of every pixel of the outside 8-bit image
OUTSIDE_16 = 4242  # and of the outside 16-bit one: a window of 4242..4243 would give it away
WRITER = "0badf00d-1"


def _png(arr: np.ndarray[Any, Any]) -> bytes:
    out = io.BytesIO()
    Image.fromarray(arr).save(out, "PNG")
    return out.getvalue()


def _line(rec: dict[str, Any]) -> bytes:
    return json.dumps(rec, separators=(",", ":")).encode() + b"\n"


class Hostile:
    """The run, what lies outside it, and the ids of its records by kind."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.run = root / "run"
        self.outside = root / "outside"
        self.outside.mkdir()
        (self.outside / "secret.txt").write_bytes(SECRET_TEXT)
        self.secret_png = _png(np.full((32, 32), OUTSIDE_8, np.uint8))
        self.secret_png16 = _png(np.full((32, 32), OUTSIDE_16, np.uint16))
        (self.outside / "secret.png").write_bytes(self.secret_png)
        (self.outside / "secret16.png").write_bytes(self.secret_png16)
        with imagelog.open(self.run) as log:
            log.log(np.tile(np.arange(64, dtype=np.uint8) * 4, (48, 1)), source="ok", format="png")
            log.log(np.tile(np.arange(64, dtype=np.uint16) * 900, (48, 1)), source="depth")
        recs = list(imagelog.read(self.run).records())
        self.good = {r["image"]["source"]: r for r in recs}
        images = self.run / "images"
        (images / "link.png").symlink_to(self.outside / "secret.png")
        (images / "link16.png").symlink_to(self.outside / "secret16.png")
        (images / "outdir").symlink_to(self.outside, target_is_directory=True)
        os.mkfifo(images / "fifo.png")
        # index lines naming files that are not the run's: (id, path, 8- or 16-bit outside image)
        escapes = {
            "up": "../outside/secret{}.png",
            "up-deep": "images/../../outside/secret{}.png",
            "abs": str(self.outside / "secret{}.png"),
            "link": "images/link{}.png",
            "dirlink": "images/outdir/secret{}.png",
            "backslash": "images\\..\\..\\outside\\secret{}.png",
            "nul": "images/\u0000/../../outside/secret{}.png",
            "dot": "./images/link{}.png",
            "empty-part": "images//link{}.png",
        }
        self.escapes: dict[str, str] = {}  # id -> path
        lines = []
        for name, pattern in escapes.items():
            for bits, suffix, base in ((8, "", "ok"), (16, "16", "depth")):
                rid = f"{name}-{bits}"
                rec = self._like(base, rid)
                rec["file"]["path"] = pattern.format(suffix)
                rec["image"].update(format="png", encoder={"name": "libpng"})
                self.escapes[rid] = rec["file"]["path"]
                lines.append(_line(rec))
        # files of the run that are no image file: a FIFO (would block a plain open), a folder
        self.unservable = {"fifo-8": "images/fifo.png", "folder-8": "images"}
        for rid, path in self.unservable.items():
            rec = self._like("ok", rid)
            rec["file"]["path"] = path
            lines.append(_line(rec))
        # duplicate ids: the same id once inside and once outside the run, in both orders
        for rid, paths in (("dup-a", ("good", "../outside/secret.png")),
                           ("dup-b", ("../outside/secret.png", "good"))):  # fmt: skip
            for path in paths:
                rec = self._like("ok", rid)
                if path != "good":
                    rec["file"]["path"] = path
                lines.append(_line(rec))
        # damaged lines, each followed by a good one that must still be read
        self.readable = ["after-big", "after-binary", "after-torn", "after-odd", "future"]
        big = self._like("ok", "big")
        big["meta"] = {"blob": "x" * (20 * 2**20)}
        binary = _line(self._like("ok", "binary")).replace(b'"ok"', b'"\xff\xfe\x80"')
        future = self._like("ok", "future")
        future["imagelog"]["schema"] = 99
        lines += [
            _line(big),
            _line(self._like("ok", "after-big")),
            binary,
            _line(self._like("ok", "after-binary")),
            b'{"@timestamp":"2026-01-01T00:00:00Z","image":{"id":"torn",\n',
            _line(self._like("ok", "after-torn")),
            b"[1, 2, 3]\n",
            b"null\n",
            b'"a string"\n',
            b'{"@timestamp":"not a time","event":{"action":"logged"},"image":{"id":"no-time"}}\n',
            b'{"event":{"action":"logged"},"image":{"id":"int-path"},"file":{"path":5}}\n',
            _line(self._like("ok", "after-odd")),
            _line(future),
        ]
        hour = self.good["ok"]["@timestamp"][:13]
        (self.run / segment_key(hour, WRITER)).write_bytes(b"".join(lines))

    def _like(self, source: str, rid: str) -> dict[str, Any]:
        rec = copy.deepcopy(self.good[source])
        rec["image"]["id"] = rid
        rec["imagelog"]["writer"] = WRITER
        return rec

    def forbidden(self) -> list[bytes]:
        """Byte strings no response may contain: the files outside the run."""
        return [SECRET_TEXT, self.secret_png[8:64], self.secret_png16[8:64]]


@pytest.fixture(name="hostile", scope="module")
def _hostile(tmp_path_factory: pytest.TempPathFactory) -> Hostile:
    return Hostile(tmp_path_factory.mktemp("hostile"))


@pytest.fixture(name="viewer", scope="module")
def _viewer(hostile: Hostile, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Viewer]:
    with Viewer(str(hostile.run), cache_dir=tmp_path_factory.mktemp("cache"), poll=0.05) as v:
        deadline = time.monotonic() + 60
        while v.index.loading and time.monotonic() < deadline:
            time.sleep(0.02)
        yield v


@pytest.fixture(autouse=True)
def _no_tracebacks(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """No route or background thread logs an exception while the run is being read."""
    caplog.set_level(logging.WARNING)
    yield
    tracebacks = [r.getMessage() for r in caplog.records if r.exc_info]
    assert not tracebacks, tracebacks


def get(v: Viewer, path: str, **kw: Any) -> tuple[int, bytes, dict[str, str]]:
    status, body, headers = raw_get(v, path, **kw)
    assert status < 500, (path, status, body[:300])
    return status, body, headers


def assert_clean(h: Hostile, path: str, body: bytes) -> None:
    for secret in h.forbidden():
        assert secret not in body, f"{path} served bytes from outside the run"


def q(text: str) -> str:
    return urllib.parse.quote(text, safe="")


class TestFilesOutsideTheRun:
    def test_every_file_route_refuses_paths_that_lead_out(
        self, viewer: Viewer, hostile: Hostile
    ) -> None:
        """Thumbnail, display (as stored, and windowed) and the original: 404, no byte served."""
        for rid, path in hostile.escapes.items():
            for route in (f"/thumb/{q(rid)}", f"/display/{q(rid)}",
                          f"/display/{q(rid)}?lo=0&hi=5000",
                          "/run/" + urllib.parse.quote(path)):  # fmt: skip
                status, body, _ = get(viewer, route)
                assert status == 404, (route, status, body[:200])
                assert_clean(hostile, route, body)

    def test_record_view_says_what_it_cannot_read(self, viewer: Viewer, hostile: Hostile) -> None:
        """The record itself is the run's and is shown; the file's EXIF and window are not read."""
        for rid in hostile.escapes:
            status, body, _ = get(viewer, f"/api/record/{q(rid)}")
            assert_clean(hostile, rid, body)
            assert str(OUTSIDE_16).encode() not in body
            if status == 200:  # a path no key can be is a 404 before anything is read
                rec = json.loads(body)
                assert rec["error"] and "not a file of this run" in rec["error"], rec
                assert rec["window"] is None and rec["exif"] == {}
            else:
                assert status == 404, (rid, status)

    def test_fifo_and_folder_are_refused_without_blocking(
        self, viewer: Viewer, hostile: Hostile
    ) -> None:
        """A FIFO (a plain open would wait for a writer forever) and a folder: 4xx at once."""
        for rid, path in hostile.unservable.items():
            for route in (f"/thumb/{rid}", f"/display/{rid}", f"/run/{path}"):
                status, _, _ = get(viewer, route)
                assert status in (404, 422), (route, status)

    def test_duplicate_ids_never_serve_the_outside_one(
        self, viewer: Viewer, hostile: Hostile
    ) -> None:
        for rid in ("dup-a", "dup-b"):
            for route in (f"/thumb/{rid}", f"/display/{rid}", f"/api/record/{rid}"):
                status, body, _ = get(viewer, route)
                assert_clean(hostile, route, body)
        status, _, _ = get(viewer, "/run/../outside/secret.png")
        assert status == 404

    def test_good_frames_are_still_served(self, viewer: Viewer, hostile: Hostile) -> None:
        for rec in hostile.good.values():
            rid, path = rec["image"]["id"], rec["file"]["path"]
            for route in (f"/thumb/{rid}", f"/display/{rid}", f"/api/record/{rid}"):
                assert get(viewer, route)[0] == 200, route
            status, body, _ = get(viewer, f"/run/{path}")
            assert status == 200 and body == (hostile.run / path).read_bytes()


class TestDamagedLines:
    def test_lines_after_damage_are_read(self, viewer: Viewer, hostile: Hostile) -> None:
        """A 20 MB line, bytes that are not UTF-8, torn JSON, lines that are no object: the
        lines after them are read, and each route answers."""
        ids = {f["id"] for f in json.loads(get(viewer, "/api/frames?limit=1000")[1])["frames"]}
        assert set(hostile.readable) <= ids, set(hostile.readable) - ids
        assert {r["image"]["id"] for r in hostile.good.values()} <= ids
        for route in ("/", "/api/summary", "/api/count", "/api/timeline", "/api/frames?limit=1000",
                      "/api/position?ts=2026-01-01T00:00:00Z", "/static/app.js"):  # fmt: skip
            status, body, _ = get(viewer, route)
            assert status in (200, 303), route
            assert_clean(hostile, route, body)

    def test_every_record_answers(self, viewer: Viewer, hostile: Hostile) -> None:
        """Each id the index holds, and ids of damaged lines: no 5xx, nothing from outside."""
        frames = json.loads(get(viewer, "/api/frames?limit=1000")[1])["frames"]
        ids = {f["id"] for f in frames} | {"torn", "binary", "no-time", "int-path", "big"}
        for rid in sorted(ids):
            for route in (f"/api/record/{q(rid)}", f"/thumb/{q(rid)}", f"/display/{q(rid)}"):
                _, body, _ = get(viewer, route)
                assert_clean(hostile, route, body)


class TestParameters:
    BAD = (
        "/api/frames?offset=-1",
        "/api/frames?offset=abc",
        "/api/frames?offset=1e3",
        "/api/frames?offset=99999999999999999999999999",
        "/api/frames?limit=0",
        "/api/frames?limit=100000",
        "/api/frames?total=-5",
        "/api/frames?since=yesterday",
        "/api/frames?until=2026-13-45",
        "/api/count?since=%00",
        "/api/count?until=" + "9" * 400,
        "/api/timeline?since=2026-01-01T00:00:00%2B99:00",
        "/api/timeline?buckets=1",
        "/api/timeline?buckets=x",
        "/api/position?ts=garbage",
        "/api/position",
        "/api/frames?sorce=cam1",
        "/api/count?foo=1",
        "/api/summary?x=1",
        "/api/frames?meta=score>high",
        "/api/frames?meta=a'b>1",
        "/display/x?lo=nan",
        "/display/x?lo=inf&hi=1",
        "/display/x?hi=abc",
        "/thumb/x?size=9",
    )

    @pytest.mark.parametrize("path", BAD)
    def test_bad_parameter_is_a_400(self, viewer: Viewer, path: str) -> None:
        status, body, _ = get(viewer, path)
        assert status == 400, (path, status, body)
        assert b"\n" not in body.strip() and b"Traceback" not in body

    def test_unknown_ids_are_404(self, viewer: Viewer) -> None:
        for rid in ("%00", "x" * 5000, "%2e%2e", "..%2Fsecret", "%FF%FE"):
            for route in ("/api/record/", "/thumb/", "/display/"):
                status, _, _ = get(viewer, route + rid)
                assert status == 404, (route + rid, status)

    def test_a_200_kb_address_is_a_414(self, viewer: Viewer) -> None:
        """Answered, not dropped; the server keeps serving."""
        status, body, _ = get(viewer, "/api/frames?q=" + "a" * 200_000)
        assert status == 414 and b"too long" in body
        assert get(viewer, "/api/summary")[0] == 200


class TestHeaders:
    def test_other_host_names_are_refused(self, viewer: Viewer) -> None:
        """DNS rebinding: a page of another site reaching the port sends its own name as Host."""
        for host in ("evil.example", "evil.example:80", "127.0.0.1.evil.example",
                     "localhost.", "", "[::2]"):  # fmt: skip
            for route in ("/", "/api/count", "/static/app.js"):
                status, body, headers = raw_get(viewer, route, headers={"Host": host})
                assert status == 403 and b"Host" in body, (host, route, status)
                assert headers["referrer-policy"] == "no-referrer"
        for host in ("localhost", f"localhost:{viewer.port}", f"127.0.0.1:{viewer.port}",
                     f"[::1]:{viewer.port}", "LOCALHOST"):  # fmt: skip
            status, _, _ = raw_get(viewer, "/api/count", headers={"Host": host})
            assert status == 200, host

    def test_no_host_header_is_refused(self, viewer: Viewer) -> None:
        with socket.create_connection((viewer.host, viewer.port), timeout=30) as s:
            s.sendall(f"GET /api/count?token={viewer.token} HTTP/1.0\r\n\r\n".encode())
            reply = b""
            while chunk := s.recv(65536):
                reply += chunk
        assert reply.startswith(b"HTTP/1.1 403"), reply[:100]

    def test_allow_remote_takes_any_host(self, hostile: Hostile, tmp_path: Path) -> None:
        with Viewer(str(hostile.run), cache_dir=tmp_path, allow_remote=True) as v:
            status, _, _ = raw_get(v, "/api/summary", headers={"Host": "viewer.lan:8080"})
            assert status == 200

    def test_referrer_policy_on_every_response(self, viewer: Viewer, hostile: Hostile) -> None:
        rid = hostile.good["ok"]["image"]["id"]
        for route, token in (("/", ""), ("/", None), ("/api/count", ""), ("/api/count?x=1", ""),
                             (f"/thumb/{rid}", ""), ("/thumb/nope", ""),
                             ("/static/app.js", ""), ("/static/nope.js", "")):  # fmt: skip
            status, _, headers = raw_get(viewer, route, token=token)
            assert headers.get("referrer-policy") == "no-referrer", (route, status)
            assert headers.get("x-content-type-options") == "nosniff", (route, status)

    def test_cookies_of_two_viewers_do_not_collide(self, hostile: Hostile, tmp_path: Path) -> None:
        """Browsers keep cookies per host, not per port: each server names its own."""
        with (Viewer(str(hostile.run), cache_dir=tmp_path / "a") as a,
              Viewer(str(hostile.run), cache_dir=tmp_path / "b") as b):  # fmt: skip
            names = {raw_get(v, "/")[2]["set-cookie"].split("=", 1)[0] for v in (a, b)}
            assert len(names) == 2


class TestStores:
    """The rule every reader inherits: a key names a file inside the run, or it is refused."""

    KEYS = ("../x", "/etc/passwd", "a/../../x", "a\\..\\x", "a/\0", "", "./a", "a//b", "a/.")

    def test_local_store_refuses_keys_that_lead_out(self, hostile: Hostile) -> None:
        store = LocalStore(hostile.run, create=False)
        for key in (*self.KEYS, "images/link.png", "images/outdir/secret.png"):
            with pytest.raises(KeyOutsideRun):
                store.get(key)
            with pytest.raises(KeyOutsideRun):
                store.exists(key)
        with pytest.raises(KeyOutsideRun):
            store.delete(["images/outdir/secret.png"])
        assert (hostile.outside / "secret.png").read_bytes() == hostile.secret_png
        path = hostile.good["ok"]["file"]["path"]
        assert store.get(path) == (hostile.run / path).read_bytes()

    def test_run_load_refuses_a_record_that_leads_out(self, hostile: Hostile) -> None:
        run = imagelog.read(hostile.run)
        for rid, path in hostile.escapes.items():
            rec = copy.deepcopy(hostile.good["ok"])
            rec["file"]["path"] = path
            with pytest.raises(KeyOutsideRun):
                run.load(rec)
            assert rid

    def test_memory_store_refuses_the_same_keys(self) -> None:
        store = MemoryStore()
        for key in self.KEYS:
            for call in (lambda k: store.get(k), lambda k: store.exists(k),
                         lambda k: store.put(k, b"x"), lambda k: store.put_if_absent(k, b"x"),
                         lambda k: store.delete([k])):  # fmt: skip
                with pytest.raises(KeyOutsideRun):
                    call(key)


class TestIndexConnection:
    def test_reads_no_file_outside_its_folders(self, viewer: Viewer, hostile: Hostile) -> None:
        """The viewer's DuckDB cannot read, write or attach files, nor turn that back on."""
        import duckdb

        cur = viewer.index._con.cursor()
        secret = str(hostile.outside / "secret.txt")
        for sql in (f"SELECT * FROM read_text('{secret}')",
                    f"COPY (SELECT 1) TO '{hostile.outside / 'out.csv'}'",
                    f"ATTACH '{hostile.outside / 'x.db'}'",
                    "SET enable_external_access = true"):  # fmt: skip
            with pytest.raises(duckdb.Error):
                cur.execute(sql).fetchall()
        assert not (hostile.outside / "out.csv").exists()
        assert not (hostile.outside / "x.db").exists()


class TestCommandLine:
    def _fails(self, argv: list[str], capsys: pytest.CaptureFixture[str], word: str) -> None:
        assert cli.main(argv) != 0
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "Traceback" not in err, err
        assert word in err, err

    def test_bad_ports(self, hostile: Hostile, capsys: pytest.CaptureFixture[str]) -> None:
        for port in ("99999", "-1", "65536"):
            self._fails(
                ["view", str(hostile.run), "--no-browser", "--port", port], capsys, "--port"
            )
        with socket.socket() as busy:
            busy.bind(("127.0.0.1", 0))
            busy.listen(1)
            port = str(busy.getsockname()[1])
            self._fails(["view", str(hostile.run), "--no-browser", "--port", port], capsys, port)

    def test_bad_runs(self, hostile: Hostile, capsys: pytest.CaptureFixture[str]) -> None:
        missing = hostile.root / "no-such-run"
        self._fails(["view", str(missing), "--no-browser"], capsys, "no imagelog run")
        assert not missing.exists()
        a_file = hostile.outside / "secret.txt"
        self._fails(["view", str(a_file), "--no-browser"], capsys, "secret.txt")
        self._fails(["view", str(hostile.run), "--no-browser", "--host", "no.such.host.invalid"],
                    capsys, "no.such.host.invalid")  # fmt: skip

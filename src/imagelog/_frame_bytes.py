"""The write of one frame's bytes: a member of the writer's tar shard (small frames, record
embedded) or a file of its own (with a ``.json`` sidecar when the record is not embedded),
then its index line; a frame whose line cannot be written leaves nothing behind."""

from __future__ import annotations

from typing import Any

from ._shards import ShardWriter
from .index import IndexWriter
from .record import dumps, mark_sidecar, ordered, stored_file
from .settings import Fsync, Settings
from .stores.base import Store


def put_frame(
    store: Store,
    index: IndexWriter,
    shards: ShardWriter | None,
    settings: Settings,
    key: str,
    data: bytes,
    rec: dict[str, Any],
    body: str | None,
    embedded: bool,
    created_ns: int,
) -> None:
    """Store an encoded frame at ``key`` (or in a shard) and append its index line; ``body`` is
    the record as embedded (None: serialised here). ``rec["file"]`` becomes the stored file."""
    sync = settings.fsync is Fsync.ALL
    unstored = rec["file"]
    if embedded and shards is not None and len(data) < settings.shard_under:
        # a member of the writer's shard: its line goes in once its bytes are (_shards.py)
        at = shards.add(created_ns, key.rsplit("/", 1)[1], data)
        rec["file"] = stored_file(unstored, at["path"], data, sha256=settings.hash,
                                  offset=at["offset"], member=at["member"])  # fmt: skip
        try:
            shards.commit(rec["file"], _line(body, unstored, rec), created_ns)
        except BaseException:  # no index line: take the member back too
            shards.undo(rec["file"])
            raise
    else:
        if not embedded:
            sidecar = key + ".json"
            store.put(sidecar, (body or dumps(ordered(rec))).encode("utf-8"), sync=sync)
            mark_sidecar(rec, sidecar)
            body = None  # the index line names the sidecar: serialised again below
        store.put(key, data, sync=sync)
        rec["file"] = stored_file(unstored, key, data, sha256=settings.hash)
        try:
            index.append_line(_line(body, unstored, rec), created_ns)
        except BaseException:
            # no index line: take the file away too, so a failed frame leaves nothing
            try:
                store.delete([key, *([key + ".json"] if not embedded else [])])
            except Exception:
                pass
            raise


def _line(body: str | None, unstored: dict[str, Any], rec: dict[str, Any]) -> str:
    """The index line of a stored frame: ``body`` (the record as embedded) with the stored
    ``file.*`` spliced in, or the record serialised when there is no body (a sidecar)."""
    if body is not None:
        return body.replace(f'"file":{dumps(unstored)}', f'"file":{dumps(rec["file"])}', 1)
    return dumps(ordered(rec))

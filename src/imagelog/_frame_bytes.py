"""The write of a frame's bytes: a member of the writer's tar shard (small frames, record
embedded) or a file of its own (with a ``.json`` sidecar when the record is not embedded),
then its index line; a frame whose line cannot be written leaves nothing behind. Members of
several frames are written together (``put_members``): one ``write()`` per shard and one index
append for the batch."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from ._shards import ShardWriter
from .index import IndexWriter
from .record import dumps, mark_sidecar, ordered, stored_file
from .settings import Fsync, Settings
from .stores.base import Store


@dataclasses.dataclass(slots=True)
class Member:
    """An encoded frame on its way into a shard (``put_members``)."""

    key: str
    data: bytes
    rec: dict[str, Any]
    body: str | None
    created_ns: int


def to_shard(shards: ShardWriter | None, settings: Settings, data: bytes, embedded: bool) -> bool:
    """Whether an encoded frame goes into a shard: shards on, its record inside, under
    ``shard_under``."""
    return embedded and shards is not None and len(data) < settings.shard_under


def put_members(
    shards: ShardWriter, settings: Settings, members: Sequence[Member]
) -> list[BaseException | None]:
    """Append frames to the writer's shards (one ``write()`` per shard), then their index lines
    (one append); per frame None (stored: ``rec["file"]`` is the stored file) or the error that
    kept it out (nothing of it is left in the shard)."""
    stored, error = shards.add_many(
        [(m.created_ns, m.key.rsplit("/", 1)[1], m.data) for m in members]
    )
    lines = []
    for m, at in zip(members, stored, strict=False):
        unstored = m.rec["file"]
        m.rec["file"] = stored_file(unstored, at["path"], m.data, sha256=settings.hash,
                                    offset=at["offset"], member=at["member"])  # fmt: skip
        lines.append((m.rec["file"], _line(m.body, unstored, m.rec), m.created_ns))
    try:
        shards.commit_many(lines)
    except BaseException as exc:  # no index lines: take the members back too
        shards.undo_many([file for file, _, _ in lines])
        return [exc] * len(members)
    return [None] * len(stored) + [error] * (len(members) - len(stored))


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
    if shards is not None and to_shard(shards, settings, data, embedded):
        # a member of the writer's shard: its line goes in once its bytes are (_shards.py)
        (error,) = put_members(shards, settings, [Member(key, data, rec, body, created_ns)])
        if error is not None:
            raise error
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

"""Retention tiers: each frame moves down a ladder of steps by age (log time), in place, with its
record, its id and its history.

A step (``Tier``) re-encodes (``format=``), thins (``thin=``: at most one frame per interval),
shrinks (``thumbnail=``: at most N pixels on the longest side) or deletes (``delete=True``);
``max_bytes=`` caps the bytes of the frames in a step's tier (the oldest move on early). Frames
labelled ``keep`` (or kept by ``open(keep=)``) are exempt from every step.

A pass (``run_pass``), for each index hour whose frames crossed a step since it was last seen:

1. ``delete``: a ``purged`` event (reason ``tier``) listing the ids, then the files go; an hour
   with no frame left is then removed whole (its index files too).
2. ``thin``: per source and interval, the frame labelled ``keep``, else one saved by a trigger,
   else the first stays; a ``thinned`` summary lists the others (ids and ``image.seq`` ranges),
   then their files go.
3. ``format``/``thumbnail`` (the latest such step the frame reached): the new file is written
   whole (``<old name>.t<step>.<ext>``, the record embedded), then a ``tiered`` event is appended
   to the index (it supersedes the record's ``file.*`` and ``image.*``: the records engine
   applies it for every reader), then the old file is removed.

Events go into the frame's own hour (a segment of a writer id new to each pass), so a whole-hour
purge takes them with the frame. A ``kill -9`` anywhere leaves each frame readable once: a new
file with no event is an orphan the next pass removes; an old file whose event was written, or
whose id a tombstone lists, is removed by the next pass. One pass runs at a time per run (a
lease, ``tiers.lock``).

The parts: ``_ladder`` (``Tier``, ladders, ``tiers.json``), ``_pass`` (the pass, an hour at a
time), ``_frame`` (one frame: its new file, its history), ``_hour`` (a pass's events and what it
removes in an hour), ``_lease`` (one pass at a time) and ``_worker`` (a writer's tier thread).
"""

from __future__ import annotations

from ._frame import history as history
from ._frame import tier_key as tier_key
from ._hour import TIER_WRITER_PREFIX as TIER_WRITER_PREFIX
from ._ladder import LADDER_KEY as LADDER_KEY
from ._ladder import Ladder as Ladder
from ._ladder import Ladders as Ladders
from ._ladder import Tier as Tier
from ._ladder import ladders_of as ladders_of
from ._ladder import load_ladders as load_ladders
from ._ladder import save_ladders as save_ladders
from ._lease import LEASE_S as LEASE_S
from ._lease import LEASE_SETTLE_S as LEASE_SETTLE_S
from ._lease import LOCK_KEY as LOCK_KEY
from ._pass import BATCH as BATCH
from ._pass import TierReport as TierReport
from ._pass import run_pass as run_pass
from ._worker import CPU_SHARE as CPU_SHARE
from ._worker import IDLE_WAIT_S as IDLE_WAIT_S
from ._worker import PASS_BUDGET_S as PASS_BUDGET_S
from ._worker import TIER_NICE as TIER_NICE
from ._worker import TierWorker as TierWorker

__all__ = [
    "LADDER_KEY",
    "Ladders",
    "Tier",
    "TierReport",
    "TierWorker",
    "history",
    "ladders_of",
    "load_ladders",
    "run_pass",
    "save_ladders",
    "tier_key",
]

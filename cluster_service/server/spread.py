"""An even spread of connections over gunicorn's workers: each accepts only while it holds
at most ``SLACK`` connections (or a sixteenth, ``SLACK_SHARE``, once they are many) more
than the least loaded of its live siblings.

Why: gunicorn's workers share one listening socket, and gthread's main loop accepts
one connection each time the socket is readable, in whichever worker gets there
first; nothing weighs how many connections a worker already holds. A burst of new
connections (a load generator, nginx or a Kubernetes Service opening its keep-alive
pool) mostly lands on the worker that is already awake and running, 25 to 32 of 32
in the benchmark, and a keep-alive connection stays with its worker for good: that
worker's GIL then sets the pod's pace while the other idles. ``SO_REUSEPORT`` (one
socket per worker) spreads by a hash of the client's address and port, which is even
only on average: with 32 connections one worker holds more than 60 % in about one
burst in five.

How: the master creates a small table in shared memory before it forks (one row per
worker: pid, open connections, heartbeat); each worker writes its own row on every
turn of its main loop and reads the others'. A worker whose count is more than
``SLACK`` above the lowest live count stops polling the listening socket until the
others catch up, so the lowest always accepts and counts differ by two at most
while they are few (plus what two workers accept at the same instant), by about a
sixteenth once they are many: in a burst a worker then takes a turn's worth of
connections (``worker.ACCEPT_PER_TURN``) before it must wait for its siblings, and
the listen backlog, with any probe's connection in it, drains at the pace of the
loop, not of the spread's recheck. A row whose heartbeat is older than
``STALE_AFTER_S`` (a worker that died or hangs) is ignored, so a dead sibling can
never stop the living from accepting; the master also clears a row as soon as it
reaps its worker.
"""

from __future__ import annotations

import mmap
import os
import struct
import time

_ROW = struct.Struct("qqd")  # pid (0: free, -1: reserved for a worker being forked), count, beat
_HEADER = struct.Struct("q")  # rows ever used: readers scan only those
ROWS = 128
STALE_AFTER_S = 3.0
SLACK = 1  # connections a worker may hold above the least loaded and still accept
# ... or the least loaded's count over this, if more: with hundreds of connections
# per worker a few more on one weigh nothing, while a slack of one in a burst (a thousand
# connections within a second) lets each worker take two before it waits for its
# siblings, and the listen backlog (a probe's connection in it) drains that slowly.
SLACK_SHARE = 16
_RESERVED = -1
_RESERVATION_TTL_S = 60.0  # a fork that never reported (failed boot) frees its row


class SpreadTable:
    """Per-worker connection counts in memory shared by the master and its workers."""

    def __init__(self, rows: int = ROWS) -> None:
        self._rows = rows
        # Anonymous and MAP_SHARED: inherited by every worker forked after this.
        self._memory = mmap.mmap(-1, _HEADER.size + rows * _ROW.size)

    def _read(self, row: int) -> tuple[int, int, float]:
        pid, count, beat = _ROW.unpack_from(self._memory, _HEADER.size + row * _ROW.size)
        return int(pid), int(count), float(beat)

    def _write(self, row: int, pid: int, count: int, beat: float) -> None:
        _ROW.pack_into(self._memory, _HEADER.size + row * _ROW.size, pid, count, beat)

    def _used(self) -> int:
        return int(_HEADER.unpack_from(self._memory, 0)[0])

    # -- the master ------------------------------------------------------------

    def reserve(self, now: float | None = None) -> int | None:
        """A free row for a worker about to be forked, or None when the table is full."""
        now = time.monotonic() if now is None else now
        for row in range(self._rows):
            pid, _count, beat = self._read(row)
            if pid == 0 or (pid == _RESERVED and now - beat > _RESERVATION_TTL_S) \
                    or (pid > 0 and not _alive(pid)):
                self._write(row, _RESERVED, 0, now)
                if row >= self._used():
                    _HEADER.pack_into(self._memory, 0, row + 1)
                return row
        return None

    def release(self, row: int | None) -> None:
        """Free ``row`` (its worker exited)."""
        if row is not None:
            self._write(row, 0, 0, 0.0)

    # -- a worker ----------------------------------------------------------------

    def report(self, row: int, count: int, now: float | None = None) -> None:
        """This worker holds ``count`` connections now (also its heartbeat)."""
        self._write(row, os.getpid(), count, time.monotonic() if now is None else now)

    def may_accept(self, row: int, count: int, now: float | None = None) -> bool:
        """Whether a worker holding ``count`` connections is at most ``SLACK`` (or
        1/``SLACK_SHARE`` of the least count, if more) above the least loaded live sibling
        (a little slack: in a burst, fewer turns between the workers)."""
        now = time.monotonic() if now is None else now
        used = self._used()
        rows = struct.unpack_from("qqd" * used, self._memory, _HEADER.size)
        least = None
        for other in range(used):
            pid, other_count, beat = rows[3 * other:3 * other + 3]
            if other != row and pid > 0 and now - beat <= STALE_AFTER_S \
                    and (least is None or other_count < least):
                least = other_count
        return least is None or count <= least + max(SLACK, least // SLACK_SHARE)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process reuses the pid: not our worker
        return False
    return True

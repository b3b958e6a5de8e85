"""How keep-alive connections spread over gunicorn's workers.

``connections_per_worker`` counts, from ``/proc``, the established TCP connections
on the server's port that each worker process holds: the kernel's socket table
(``/proc/net/tcp``, ``tcp6``) gives the inode of every established socket whose
local port is the server's, and each worker's ``/proc/<pid>/fd`` says which of
those inodes it has open. ``Sampler`` does that every 0.2 s while a load runs and
keeps the worst share any worker held in the window.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Iterable

from bench import procs

_ESTABLISHED = "01"
SAMPLE_EVERY_S = 0.2


def _established_inodes(port: int) -> set[str]:
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) > 9 and fields[3] == _ESTABLISHED \
                    and int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(fields[9])
    return inodes


def connections_per_worker(worker_pids: Iterable[int], port: int) -> dict[int, int]:
    """Established connections on ``port`` held by each of ``worker_pids`` (from /proc)."""
    inodes = _established_inodes(port)
    counts = {}
    for pid in worker_pids:
        held = 0
        try:
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                try:
                    target = fd.readlink().name
                except OSError:
                    continue
                if target.startswith("socket:[") and target[8:-1] in inodes:
                    held += 1
        except OSError:
            continue
        counts[pid] = held
    return counts


class Sampler:
    """Samples the spread in a thread while a load runs (``with Sampler(...) as s:``)."""

    def __init__(self, master_pid: int, port: int, connections: int) -> None:
        self.master_pid, self.port, self.connections = master_pid, port, connections
        self.worst_share = 0.0  # the largest share of all connections one worker held
        self.worst_counts: list[int] = []
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="spread-sampler", daemon=True)

    def __enter__(self) -> "Sampler":
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        while not self._stop.wait(SAMPLE_EVERY_S):
            pids = procs.worker_pids(self.master_pid)
            counts = sorted(connections_per_worker(pids, self.port).values(), reverse=True)
            total = sum(counts)
            # Only windows where the load's connections are all open: while wrk
            # connects or closes, a share of a few connections means nothing.
            if total < self.connections * 0.9:
                continue
            self.samples += 1
            share = counts[0] / total
            if share > self.worst_share:
                self.worst_share, self.worst_counts = share, counts

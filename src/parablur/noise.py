"""The machine's own noise over a measurement: CPU time taken by other programs, and steal.

A round's speedup measures ParaBlur only when nothing else competed for the
cores. ``LoadSampler`` reads the machine's CPU time (``/proc/stat``, through
psutil) and the CPU time of the benchmark's own process tree (this process, its
pools, Dask's nannies and workers, and everything they started) when a round
starts and when it ends: the machine's busy time minus the tree's is what other
programs took. Steal time is what a hypervisor gave to other virtual machines.
Both are reported in cores (CPU seconds per wall second).
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass

import psutil

#: A round is noisy when other programs and steal took more than this many cores
#: beyond the cores the benchmark leaves idle (the machine's cores minus its largest pool).
NOISY_LOAD_CORES = 0.25

_GONE = (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess)


@dataclass(frozen=True)
class Load:
    """What other programs and the hypervisor took while a measurement ran, in cores."""

    wall_s: float
    cores: int
    busy_cores: int  # the cores the benchmark itself keeps busy (its largest pool)
    own_cores: float  # CPU taken by the benchmark's own process tree
    outside_cores: float  # CPU taken by every other process
    steal_cores: float

    @property
    def taken_cores(self) -> float:
        return self.outside_cores + self.steal_cores

    @property
    def spare_cores(self) -> int:
        return max(self.cores - self.busy_cores, 0)

    @property
    def limit_cores(self) -> float:
        return self.spare_cores + NOISY_LOAD_CORES

    @property
    def noisy(self) -> bool:
        """True when other programs competed for the cores the benchmark uses."""
        return self.taken_cores > self.limit_cores

    def describe(self) -> str:
        """One phrase for a round line, e.g. 'outside load 0.85 cores (other programs)'."""
        text = f"outside load {self.outside_cores:.2f} cores (other programs)"
        if self.steal_cores >= 0.005:
            text += f", steal {self.steal_cores:.2f} cores (other virtual machines)"
        return text


def _machine_s() -> tuple[float, float]:
    """The machine's busy and stolen CPU seconds since boot, summed over every core."""
    t = psutil.cpu_times()._asdict()
    steal = t.get("steal", 0.0)
    # guest time is already counted in user and nice; idle and iowait are not busy.
    not_busy = sum(t.get(k, 0.0) for k in ("idle", "iowait", "steal", "guest", "guest_nice"))
    return sum(t.values()) - not_busy, steal


def tree_cpu_s(roots: Iterable[int]) -> float:
    """CPU seconds of the processes ``roots`` and all their descendants.

    Each process counts its own time and that of the children it has reaped, so a
    pool process that ends between two readings is still counted, through its parent.
    """
    seen: set[int] = set()
    total = 0.0
    for root in roots:
        try:
            proc = psutil.Process(root)
            procs = [proc, *proc.children(recursive=True)]
        except _GONE:
            continue
        for p in procs:
            if p.pid in seen:
                continue
            seen.add(p.pid)
            with contextlib.suppress(*_GONE):
                t = p.cpu_times()
                total += t.user + t.system + t.children_user + t.children_system
    return total


class LoadSampler:
    """Measures the outside load over a ``with`` block; ``load`` is set when the block ends.

    ``own`` adds processes (and their trees) that belong to the benchmark without
    being this process's descendants, such as the local workers of a remote cluster.
    """

    def __init__(self, busy_cores: int, own: Iterable[int] = ()) -> None:
        self.busy_cores = busy_cores
        self.roots = (os.getpid(), *own)
        self.load: Load | None = None

    def _read(self) -> tuple[float, float, float, float]:
        busy, steal = _machine_s()
        return time.perf_counter(), busy, steal, tree_cpu_s(self.roots)

    def __enter__(self) -> LoadSampler:
        self._start = self._read()
        return self

    def __exit__(self, *exc: object) -> None:
        end = self._read()
        wall, busy, steal, own = (b - a for a, b in zip(self._start, end, strict=True))
        wall = max(wall, 1e-9)
        self.load = Load(
            wall_s=wall, cores=psutil.cpu_count() or 1, busy_cores=self.busy_cores,
            own_cores=own / wall,
            # The two clocks are sampled apart: a negative difference is rounding, not load.
            outside_cores=max(busy - own, 0.0) / wall, steal_cores=max(steal, 0.0) / wall,
        )


def _whoami() -> tuple[int, float]:
    import psutil

    return os.getpid(), psutil.Process().create_time()


def dask_local_pids(client: object) -> set[int]:
    """The pids of a Dask cluster's scheduler, nannies and workers that run on this machine.

    Each process reports its pid and start time; a pid counts only when the local
    process with that pid started at that same time, so other machines' pids never match.
    """
    reports: list[tuple[int, float]] = []
    with contextlib.suppress(Exception):
        reports += client.run(_whoami).values()
    with contextlib.suppress(Exception):
        reports += client.run(_whoami, nanny=True).values()
    with contextlib.suppress(Exception):
        reports.append(client.run_on_scheduler(_whoami))
    pids = set()
    for pid, started in reports:
        with contextlib.suppress(*_GONE):
            if abs(psutil.Process(pid).create_time() - started) < 0.05:
                pids.add(pid)
    return pids

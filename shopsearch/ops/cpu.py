"""Where the CPU of a benchmark goes, read from each process's counters (psutil): a process and its
children, groups of processes, the whole machine, and the wait for an idle machine before timing.
``bench query`` (each mode's CPU by process group) and ``bench ingest`` (each service's CPU an item)
read them."""

from __future__ import annotations

from typing import Callable

import psutil


def process_cpu(process: psutil.Process) -> float:
    """User + system CPU seconds one process has used so far."""
    times = process.cpu_times()
    return times.user + times.system


def cpu_seconds(processes: list[psutil.Process]) -> float:
    """User + system CPU seconds the processes have used so far (one that is gone counts 0)."""
    total = 0.0
    for p in processes:
        try:
            total += process_cpu(p)
        except psutil.Error:  # gone meanwhile (a pool child that exited)
            continue
    return total


def family(pid: int) -> list[psutil.Process] | None:
    """A process and its living descendants, each once; None when it is gone.

    >>> me = psutil.Process()
    >>> family(me.pid)[0] == me, family(2 ** 22 + 1)  # above Linux's largest pid: no such process
    (True, None)
    """
    try:
        root = psutil.Process(pid)
        return list({root.pid: root, **{c.pid: c for c in root.children(recursive=True)}}.values())
    except (psutil.Error, ValueError, TypeError):  # gone, or no pid at all
        return None


def family_cpu_seconds(pid: int) -> float | None:
    """CPU seconds of a process and its living descendants (a Celery worker and its pool); None when it is gone."""
    found = family(pid)
    return None if found is None else cpu_seconds(found)


def machine_cpu_seconds() -> float:
    """CPU seconds every core of this machine has spent on its own work so far: not idle, not
    waiting for I/O, not taken by the hypervisor (steal); guests' time is already in user time."""
    t = psutil.cpu_times()
    left_out = ("idle", "iowait", "steal", "guest", "guest_nice")
    return sum(t) - sum(getattr(t, name, 0.0) for name in left_out)


class CpuMeter:
    """Where the CPU of a mode goes: each named group of processes (the proxy's, OpenSearch's, this
    load client's), the rest of the machine as ``other``. ``groups`` maps a name to a function
    giving that group's processes now (the proxy's workers are looked up at each reading)."""

    def __init__(self, groups: dict[str, Callable[[], list[psutil.Process]]]):
        self.groups = groups

    def read(self) -> dict[str, float]:
        found = {name: cpu_seconds(processes()) for name, processes in self.groups.items()}
        found["machine"] = machine_cpu_seconds()
        return found


def cpu_per_request(before: dict[str, float], after: dict[str, float], requests: int, wall_s: float) -> dict:
    """Milliseconds of CPU a request for each group between two readings, ``other`` for the rest
    of the machine, ``total`` for all of it, and the cores the whole machine kept busy (pure).

    >>> cpu_per_request({"proxy": 1.0, "opensearch": 5.0, "machine": 10.0},
    ...                 {"proxy": 1.5, "opensearch": 5.8, "machine": 11.6}, 100, 1.0)
    {'proxy': 5.0, 'opensearch': 8.0, 'other': 3.0, 'total': 16.0, 'cores_in_use': 1.6}
    """
    n = max(requests, 1)
    spent = {name: max(after[name] - before[name], 0.0) for name in before if name != "machine"}
    machine = max(after["machine"] - before["machine"], 0.0)
    out = {name: round(s * 1000 / n, 3) for name, s in spent.items()}
    out["other"] = round(max(machine - sum(spent.values()), 0.0) * 1000 / n, 3)
    out["total"] = round(machine * 1000 / n, 3)
    out["cores_in_use"] = round(machine / max(wall_s, 1e-9), 2)
    return out


QUIET_CORES = 0.15  # the machine's CPU in use, in cores, under which it counts as idle (idle services: 0.02-0.06)


def machine_busy(seconds: float) -> float:
    """Cores of this machine in use over the next ``seconds`` (every process: the proxy's workers,
    OpenSearch, the Celery workers)."""
    return psutil.cpu_percent(interval=seconds) / 100.0 * (psutil.cpu_count() or 1)


def wait_for_quiet(busy: Callable[[float], float] = machine_busy, *, below: float = QUIET_CORES, rounds: int = 2,
                   interval: float = 1.0, most: int = 180) -> dict:
    """Sample ``busy(interval)`` until ``rounds`` samples in a row are under ``below`` cores, at most
    ``most`` samples. A freshly started proxy worker prepares its ranker's product text for some
    seconds after its first answers (``LiveRankers``), and OpenSearch may still merge; a mode timed
    meanwhile shares the cores with them (direct BM25, timed first, read 211-584 QPS that way
    against 800-1,160 on an idle machine). ``{"quiet": bool, "waited_s": ..., "cores": last sample}``.

    >>> samples = iter([1.4, 0.9, 0.05, 0.3, 0.04, 0.02, 0.9])
    >>> wait_for_quiet(lambda s: next(samples))
    {'quiet': True, 'waited_s': 6.0, 'cores': 0.02}
    >>> wait_for_quiet(lambda s: 1.0, most=3)
    {'quiet': False, 'waited_s': 3.0, 'cores': 1.0}
    """
    calm = taken = 0
    cores = 0.0
    while taken < most and calm < rounds:
        cores = busy(interval)
        taken += 1
        calm = calm + 1 if cores < below else 0
    return {"quiet": calm >= rounds, "waited_s": round(taken * interval, 1), "cores": round(cores, 3)}

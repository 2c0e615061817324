"""This process and its descendants, as Linux's /proc shows them (for `xloader bench`, the
benchmarks and the shutdown tests). Linux only; elsewhere the tree is just this process."""

from __future__ import annotations

import os

_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _stat_fields(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat") as file:
            return file.read().rsplit(")", 1)[1].split()  # the name may hold spaces and ")"
    except (OSError, IndexError):
        return None


def process_tree(pid: int | None = None) -> list[int]:
    """`pid` (default: this process) and every live descendant, parents before children."""
    root = os.getpid() if pid is None else pid
    if not os.path.isdir("/proc"):
        return [root]
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat_fields(int(entry))
            if fields is not None:
                children.setdefault(int(fields[1]), []).append(int(entry))
    found, pending = [root], [root]
    while pending:
        for child in children.get(pending.pop(), []):
            found.append(child)
            pending.append(child)
    return found


def cpu_seconds(pid: int) -> float:
    """User + system CPU of `pid` and of its children it has reaped (0 if it is gone)."""
    fields = _stat_fields(pid)
    return 0.0 if fields is None else sum(int(v) for v in fields[11:15]) / _TICKS


def peak_rss_mib(pid: int) -> float:
    """The peak resident set size of `pid` (VmHWM), 0 if it is gone."""
    try:
        with open(f"/proc/{pid}/status") as file:
            for line in file:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _rollup_kib(pid: int, fields: tuple[str, ...]) -> dict[str, int]:
    found: dict[str, int] = {}
    try:
        with open(f"/proc/{pid}/smaps_rollup") as file:
            for line in file:
                name = line.split(":", 1)[0]
                if name in fields:
                    found[name] = int(line.split()[1])
    except OSError:
        pass
    return found


def pss_without_shmem_mib(pid: int) -> float:
    """Proportional set size of `pid` (its private pages plus its share of shared ones), without
    shared-memory (tmpfs, /dev/shm) pages, which `system_shmem_mib` counts."""
    found = _rollup_kib(pid, ("Pss", "Pss_Shmem"))
    return (found.get("Pss", 0) - found.get("Pss_Shmem", 0)) / 1024


def system_shmem_mib() -> float:
    """Shared memory in use on the whole machine (/proc/meminfo Shmem), mapped or not."""
    with open("/proc/meminfo") as file:
        for line in file:
            if line.startswith("Shmem:"):
                return int(line.split()[1]) / 1024
    return 0.0

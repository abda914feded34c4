"""Where a process's resident memory is: /proc/PID/smaps_rollup and smaps per mapping.

VmRSS counts every page a process has resident, code shared with other processes included;
PSS divides each shared page by the processes sharing it; Private (clean + dirty) is what the
process alone holds, so what a second sidecar on the same host adds. `by_mapping` sums smaps per
backing file (anonymous mappings under "[anon]", the main thread's under "[heap]", thread
stacks, mapped at run time, among the anonymous ones), largest RSS first.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Mapping", "Rollup", "by_mapping", "rollup", "threads"]

KB_FIELDS = ("Rss", "Pss", "Private_Clean", "Private_Dirty", "Shared_Clean", "Anonymous")


@dataclass(frozen=True)
class Rollup:
    """A whole process, in MB (10^6 bytes would differ by 5 %; these are MiB, as VmRSS is)."""

    rss_mb: float
    pss_mb: float
    private_mb: float
    anonymous_mb: float

    def as_dict(self) -> dict[str, float]:
        return {
            "rss": round(self.rss_mb, 1),
            "pss": round(self.pss_mb, 1),
            "private": round(self.private_mb, 1),
            "anonymous": round(self.anonymous_mb, 1),
        }


@dataclass(frozen=True)
class Mapping:
    """One backing file (or kind of anonymous memory), summed over its mappings, in MiB."""

    name: str
    rss_mb: float
    pss_mb: float
    private_mb: float


def _kb_fields(lines: list[str]) -> dict[str, int]:
    found: dict[str, int] = {}
    for line in lines:
        key, _, rest = line.partition(":")
        if key in KB_FIELDS:
            found[key] = found.get(key, 0) + int(rest.split()[0])
    return found


def rollup(pid: int) -> Rollup:
    kb = _kb_fields(Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines())
    return Rollup(
        rss_mb=kb.get("Rss", 0) / 1024,
        pss_mb=kb.get("Pss", 0) / 1024,
        private_mb=(kb.get("Private_Clean", 0) + kb.get("Private_Dirty", 0)) / 1024,
        anonymous_mb=kb.get("Anonymous", 0) / 1024,
    )


def _mapping_name(header: str) -> str:
    parts = header.split(maxsplit=5)
    if len(parts) < 6:
        return "[anon]"
    name = parts[5].strip()
    return os.path.basename(name) if name.startswith("/") else name


def by_mapping(pid: int, top: int = 20) -> list[Mapping]:
    sums: dict[str, dict[str, int]] = {}
    name = "[anon]"
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        first = line.split(maxsplit=1)[0] if line else ""
        if "-" in first and not first.endswith(":"):  # a mapping's header: "start-end perms ..."
            name = _mapping_name(line)
            continue
        key, _, rest = line.partition(":")
        if key in ("Rss", "Pss", "Private_Clean", "Private_Dirty"):
            entry = sums.setdefault(name, {})
            entry[key] = entry.get(key, 0) + int(rest.split()[0])
    mappings = [
        Mapping(
            name=n,
            rss_mb=kb.get("Rss", 0) / 1024,
            pss_mb=kb.get("Pss", 0) / 1024,
            private_mb=(kb.get("Private_Clean", 0) + kb.get("Private_Dirty", 0)) / 1024,
        )
        for n, kb in sums.items()
    ]
    return sorted(mappings, key=lambda m: m.rss_mb, reverse=True)[:top]


def threads(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/task"))

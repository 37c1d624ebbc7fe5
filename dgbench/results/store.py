"""The results store: a directory of JSON Lines files, appended atomically.

Each protocol writes ``<results dir>/<protocol>.jsonl``. Records of older schema versions are
read in the current shape (:func:`dgbench.results.record.upgrade`). An append writes whole lines under a
cross-process file lock with a single ``write`` + ``fsync``, so parallel runs and distributed
ranks never interleave or leave half a line. Readers skip (and report) a damaged line and keep
the rest.
"""
from __future__ import annotations

import json
import os
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from filelock import FileLock

from .record import canonical_json, upgrade


class DamagedLineWarning(UserWarning):
    """A line of a results file could not be parsed; it was skipped."""


class ResultStore:
    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    def path(self, protocol: str) -> Path:
        return self.root / f"{protocol}.jsonl"

    def append(self, records: Iterable[dict[str, Any]]) -> None:
        """Append records, grouped per protocol file, atomically with respect to other writers."""
        by_file: dict[Path, list[str]] = {}
        for rec in records:
            by_file.setdefault(self.path(rec["protocol"]), []).append(canonical_json(rec) + "\n")
        self.root.mkdir(parents=True, exist_ok=True)
        for path, lines in by_file.items():
            payload = "".join(lines).encode()
            with FileLock(str(path) + ".lock"):
                # A previous writer killed mid-write could leave a line without its newline;
                # start ours on a fresh line so the damage stays confined to that one line.
                if path.exists() and path.stat().st_size:
                    with open(path, "rb") as f:
                        f.seek(-1, os.SEEK_END)
                        if f.read(1) != b"\n":
                            payload = b"\n" + payload
                fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
                try:
                    os.write(fd, payload)
                    os.fsync(fd)
                finally:
                    os.close(fd)

    def files(self) -> list[Path]:
        return sorted(self.root.glob("*.jsonl")) if self.root.is_dir() else []

    def iter_records(self, protocol: str | None = None) -> Iterator[dict[str, Any]]:
        """Every parseable record; a damaged line is reported (file and line number) and skipped."""
        paths = [self.path(protocol)] if protocol else self.files()
        for path in paths:
            if not path.exists():
                continue
            with open(path, encoding="utf-8", errors="replace") as f:
                for lineno, line in enumerate(f, 1):
                    if not line.strip():
                        continue
                    try:
                        rec = json.loads(line)
                        if not isinstance(rec, dict) or "key" not in rec:
                            raise ValueError("not a dgbench record")
                    except ValueError as exc:
                        warnings.warn(
                            f"{path}:{lineno}: damaged result line skipped ({exc})",
                            DamagedLineWarning,
                            stacklevel=2,
                        )
                        continue
                    yield upgrade(rec)

    def records(self, protocol: str | None = None) -> list[dict[str, Any]]:
        return list(self.iter_records(protocol))

    def completed_keys(self, protocol: str | None = None) -> set[str]:
        return {r["key"] for r in self.iter_records(protocol)}

    def find(self, key: str, protocol: str | None = None) -> dict[str, Any] | None:
        """The latest record with ``key``, or None."""
        found = None
        for rec in self.iter_records(protocol):
            if rec["key"] == key:
                found = rec
        return found

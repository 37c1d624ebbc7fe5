"""The results store: a directory of JSON Lines files that readers see one result per key.

Two layouts, chosen per results directory:

* **appended** (the default, for one machine): each protocol appends to ``<root>/<protocol>.jsonl``;
  an append writes whole lines under a cross-process file lock with a single ``write`` + ``fsync``,
  so parallel runs and ranks never interleave. A writer killed mid-write can leave one torn line,
  which readers report (file and line) and skip.
* **batches** (for a filesystem shared by many nodes, e.g. a SLURM sweep): once ``<root>/batches/``
  exists, every ``append`` writes its records to a new file ``batches/<protocol>/<time>-<host>-<pid>-
  <random>.jsonl`` through a hidden temporary file renamed into place. It needs no lock (file locks
  are not honoured on every network filesystem), and a reader sees a batch whole or not at all: a
  killed writer leaves only its hidden temporary file. ``ResultStore(root, batches=True)`` turns a
  directory to this layout; records appended before stay in the ``.jsonl`` files and are read first.

One result per key. Nothing stops two processes from storing one key twice: a run plans its work
from the keys stored when it starts and appends when it finishes, so two runs that measure the same
thing at once (a resumed run beside a survivor of the killed one, two sweeps over one cell) both
append, and ``--force`` appends a new copy on purpose. Readers therefore count one record per key:
the **last stored** (``.jsonl`` lines in file order, then batches in name order, i.e. write time),
because ``--force`` stores a newer copy to replace the old one, and two racing copies measured the
same identity with the same code, so any fixed rule is right and this one is the same for every
reader. ``iter_records(copies=True)`` still shows every stored line.

Lookups are indexed: a store reads each file once, then only what was appended since (one
``stat`` per file per lookup), so ``find`` and ``completed_keys`` cost a dict access, not a rescan.
Records of older schema versions are read in the current shape (:func:`dgbench.results.record.upgrade`).
"""
from __future__ import annotations

import json
import os
import socket
import time
import uuid
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from .record import canonical_json, upgrade

BATCHES = "batches"


class DamagedLineWarning(UserWarning):
    """A line of a results file could not be parsed; it was skipped."""


def _format_warning(message, category, filename, lineno, line=None):  # type: ignore[no-untyped-def]
    """A damaged line is reported as one line (its message names the file and line), not as
    Python's ``path:lineno: Category: message`` followed by the source line that warned."""
    if isinstance(category, type) and issubclass(category, DamagedLineWarning):
        return f"warning: {message}\n"
    return _plain_format_warning(message, category, filename, lineno, line)


_plain_format_warning = warnings.formatwarning
warnings.formatwarning = _format_warning


def _damaged(where: str, reason: str) -> None:
    warnings.warn(f"{where}: damaged result line skipped ({reason}); the other records are kept and the next "
                  "run measures this one again: delete or repair that line to silence this", DamagedLineWarning,
                  stacklevel=4)


@dataclass
class _Line:
    """One stored record, kept as text: parsed again for each reader, so callers cannot alter the index."""
    key: str
    text: str


def _parse(text: str, where: str) -> _Line | None:
    if not text.strip():
        return None
    try:
        rec = json.loads(text)
        if not isinstance(rec, dict) or "key" not in rec:
            raise ValueError("not a dgbench record")
    except ValueError as exc:
        _damaged(where, str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        return None
    return _Line(str(rec["key"]), text)


@dataclass
class _AppendedFile:
    """The parsed lines of one appended ``.jsonl`` file; :meth:`refresh` reads only what was added."""
    path: Path
    lines: list[_Line] = field(default_factory=list)
    inode: int = -1
    offset: int = 0  # bytes read so far
    lineno: int = 0  # lines read so far
    mid_line: bool = False  # the last read ended in a torn line (the next byte ends it)

    def refresh(self) -> bool:
        """Read what was appended since the last call; True when anything changed."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            st = None
        changed = False
        if st is None or st.st_ino != self.inode or st.st_size < self.offset:  # new, replaced or truncated
            changed = self.offset > 0
            self.lines, self.offset, self.lineno, self.mid_line = [], 0, 0, False
            self.inode = st.st_ino if st else -1
        if st is None or st.st_size == self.offset:
            return changed
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            chunk = f.read()
        if not chunk.endswith(b"\n") and not self._tail_is_torn():
            chunk = chunk[: chunk.rfind(b"\n") + 1]  # a writer is still appending that line: read it next time
        if not chunk:
            return changed
        pieces = chunk.split(b"\n")
        if self.mid_line:  # the rest of a torn line already reported
            pieces = pieces[1:]
        for raw in pieces[:-1] if chunk.endswith(b"\n") else pieces:
            self.lineno += 1
            line = _parse(raw.decode("utf-8", errors="replace"), f"{self.path}:{self.lineno}")
            if line:
                self.lines.append(line)
        self.offset += len(chunk)
        self.mid_line = not chunk.endswith(b"\n")
        return True

    def _tail_is_torn(self) -> bool:
        """A last line without its newline: a writer mid-append (it holds the lock), or one killed
        mid-write. Waiting for the lock tells them apart on the filesystems that honour it."""
        try:
            with FileLock(str(self.path) + ".lock", timeout=30):
                with open(self.path, "rb") as f:
                    f.seek(0, os.SEEK_END)
                    if f.tell() == 0:
                        return False
                    f.seek(-1, os.SEEK_END)
                    return f.read(1) != b"\n"
        except Timeout:  # a writer is still at it
            return False
        except OSError:  # a read-only results folder: no writer can be appending to it
            return True


@dataclass
class _BatchDir:
    """The batch files of one protocol; each is complete once visible, so it is read once."""
    path: Path
    files: dict[str, list[_Line]] = field(default_factory=dict)

    def refresh(self) -> bool:
        names = sorted(n for n in os.listdir(self.path) if n.endswith(".jsonl") and not n.startswith(".")) \
            if self.path.is_dir() else []
        new = [n for n in names if n not in self.files]
        for name in new:
            text = (self.path / name).read_text(encoding="utf-8", errors="replace")
            parsed = [_parse(t, f"{self.path / name}:{i}") for i, t in enumerate(text.splitlines(), 1)]
            self.files[name] = [p for p in parsed if p]
        if len(names) != len(self.files):  # a batch was deleted by hand
            self.files = {n: self.files[n] for n in names}
            return True
        return bool(new)

    def lines(self) -> list[_Line]:
        return [line for name in sorted(self.files) for line in self.files[name]]


class _ProtocolIndex:
    """Every stored line of one protocol in store order, and which line holds each key's result."""

    def __init__(self, appended: Path, batches: Path):
        self.appended, self.batches = _AppendedFile(appended), _BatchDir(batches)
        self.lines: list[_Line] = []
        self.winner: dict[str, int] = {}

    def refresh(self) -> None:
        changed = self.appended.refresh()
        changed = self.batches.refresh() or changed
        if changed:
            self.lines = self.appended.lines + self.batches.lines()
            self.winner = {line.key: i for i, line in enumerate(self.lines)}  # the last stored wins

    def unique(self) -> Iterator[_Line]:
        return (line for i, line in enumerate(self.lines) if self.winner[line.key] == i)


class ResultStore:
    def __init__(self, root: str | os.PathLike, *, batches: bool = False):
        self.root = Path(root)
        self._index: dict[str, _ProtocolIndex] = {}
        self._batch_seq = 0
        if batches:
            (self.root / BATCHES).mkdir(parents=True, exist_ok=True)

    def path(self, protocol: str) -> Path:
        """The appended file of ``protocol`` (which may not exist in the batches layout)."""
        return self.root / f"{protocol}.jsonl"

    @property
    def batched(self) -> bool:
        """Whether appends write batch files (see the module docstring); checked at each append."""
        return (self.root / BATCHES).is_dir()

    def append(self, records: Iterable[dict[str, Any]]) -> None:
        """Append records, grouped per protocol, atomically with respect to other writers and readers."""
        by_protocol: dict[str, list[str]] = {}
        for rec in records:
            by_protocol.setdefault(rec["protocol"], []).append(canonical_json(rec) + "\n")
        self.root.mkdir(parents=True, exist_ok=True)
        for protocol, lines in by_protocol.items():
            payload = "".join(lines).encode()
            if self.batched:
                self._write_batch(protocol, payload)
            else:
                self._append_locked(self.path(protocol), payload)

    @staticmethod
    def _append_locked(path: Path, payload: bytes) -> None:
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

    def _write_batch(self, protocol: str, payload: bytes) -> None:
        """Write-then-rename: the batch appears whole under its final name, or not at all."""
        folder = self.root / BATCHES / protocol
        folder.mkdir(parents=True, exist_ok=True)
        self._batch_seq += 1
        # Time first, so that name order is store order; host, pid and a random part keep names unique.
        name = f"{time.time_ns():020d}-{socket.gethostname()}-{os.getpid()}-{self._batch_seq}-{uuid.uuid4().hex[:8]}.jsonl"
        tmp = folder / f".tmp-{name}"
        with open(tmp, "wb") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, folder / name)
        dir_fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dir_fd)  # the rename itself survives a crash of the node
        finally:
            os.close(dir_fd)

    def protocols(self) -> list[str]:
        """The protocols with stored records, in name order."""
        if not self.root.is_dir():
            return []
        names = {p.stem for p in self.root.glob("*.jsonl")}
        batches = self.root / BATCHES
        if batches.is_dir():
            names |= {p.name for p in batches.iterdir() if p.is_dir()}
        return sorted(names)

    def files(self) -> list[Path]:
        """One path per protocol with records (its appended file, even when only batches exist)."""
        return [self.path(p) for p in self.protocols()]

    def _indexed(self, protocol: str) -> _ProtocolIndex:
        index = self._index.get(protocol)
        if index is None:
            index = self._index[protocol] = _ProtocolIndex(self.path(protocol), self.root / BATCHES / protocol)
        index.refresh()
        return index

    def iter_records(self, protocol: str | None = None, *, copies: bool = False) -> Iterator[dict[str, Any]]:
        """One record per key (the last stored), in store order; ``copies=True``: every stored line.

        A damaged line is reported once per store (file and line number) and skipped."""
        for name in [protocol] if protocol else self.protocols():
            index = self._indexed(name)
            for line in index.lines if copies else list(index.unique()):
                yield upgrade(json.loads(line.text))

    def records(self, protocol: str | None = None, *, copies: bool = False) -> list[dict[str, Any]]:
        return list(self.iter_records(protocol, copies=copies))

    def completed_keys(self, protocol: str | None = None) -> set[str]:
        names = [protocol] if protocol else self.protocols()
        return {key for name in names for key in self._indexed(name).winner}

    def find(self, key: str, protocol: str | None = None) -> dict[str, Any] | None:
        """The record stored for ``key`` (the last stored copy), or None."""
        for name in [protocol] if protocol else self.protocols():
            index = self._indexed(name)
            if key in index.winner:
                return upgrade(json.loads(index.lines[index.winner[key]].text))
        return None

"""CSV I/O of the published files, in one place: reading rows with file:line errors, writing the
same bytes for the same rows, and the output folders they go into.

Every leaderboard schema (the metric kinds', divergence's, the paper's comparisons) reads and
writes through these helpers, so a malformed file is reported the same way whatever its kind:
one line naming the file, the line and the column, and what would fix it.
"""
from __future__ import annotations

import csv
import io
import math
import os
import shutil
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from ..errors import DgbenchError, SpecError


DECIMALS = 2  # the paper prints two decimals; so do leaderboards (and the check compares at it)


def leaderboard_name(dataset: str, protocol: str) -> str:
    """File stem of a leaderboard: ``digits-appearance`` (its CSV, page and sidecars share it)."""
    return f"{dataset}-{protocol}"


class LeaderboardError(SpecError):
    """A leaderboard file is malformed; the message names the file and the line."""


def csv_text(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """The CSV bytes of a header and rows (``\\n`` line ends: the same on every platform)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    w.writerows(rows)
    return buf.getvalue()


def output_dir(path: str | os.PathLike, option: str = "--out") -> Path:
    """``path`` as a folder to write into, made if missing; a file there is a one-line error."""
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise DgbenchError(f"{option} {out}: a file is there, and dgbench writes a folder of files "
                           f"there; name a folder (new or existing) instead")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DgbenchError(f"{option} {out}: cannot make the folder ({exc.strerror})") from None
    return out


def write_if_changed(path: Path, text: str) -> None:
    """Write ``text`` atomically; an identical file is left untouched (mtime included), so
    re-publishing is a no-op."""
    data = text.encode("utf-8")
    if path.exists() and path.read_bytes() == data:
        return
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def copy_if_changed(src: Path, dst: Path) -> list[Path]:
    """Copy ``src`` to ``dst`` atomically unless they are one file or equal; [dst] if it was new."""
    if src.resolve() == dst.resolve():
        return []
    dst.parent.mkdir(parents=True, exist_ok=True)
    if not (dst.exists() and dst.read_bytes() == src.read_bytes()):
        tmp = dst.with_suffix(dst.suffix + ".tmp")
        shutil.copyfile(src, tmp)
        os.replace(tmp, dst)
    return [dst]


def csv_rows(reader: Any) -> Iterator[tuple[int, list[str]]]:
    """``(line number, fields)`` of each row of a ``csv.reader`` that is not blank."""
    for row in reader:
        if row and any(c.strip() for c in row):
            yield reader.line_num, row


def row_record(p: Path, line: int, header: list[str], row: list[str],
               required: Iterable[str]) -> tuple[dict[str, Any], Callable[[str, str], LeaderboardError]]:
    """A row as ``{column: stripped text, "line": line}`` with its ``required`` columns checked
    non-empty, and ``bad(column, why)``: the error that names the file, line and column."""
    def bad(col: str, why: str) -> LeaderboardError:
        return LeaderboardError(f"{p}:{line}: column {col!r}: {why}")

    if len(row) != len(header):
        raise LeaderboardError(f"{p}:{line}: {len(row)} fields, the header has {len(header)}")
    rec: dict[str, Any] = dict(zip(header, (c.strip() for c in row)))
    rec["line"] = line
    for col in required:
        if not rec[col]:
            raise bad(col, "empty; every row needs it")
    return rec, bad


def check_unique(p: Path, records: list[dict[str, Any]], key_columns: Iterable[str]) -> None:
    """No two rows share a key (a table would show one of them and hide the other)."""
    key_columns = tuple(key_columns)
    seen: dict[tuple[Any, ...], int] = {}
    for rec in records:
        key = tuple(rec.get(c, "") for c in key_columns)
        if key in seen:
            raise LeaderboardError(f"{p}:{rec['line']}: duplicate row, same key as line {seen[key]} "
                                   f"({', '.join(str(k) for k in key if k != '')})")
        seen[key] = rec["line"]


def header_error(p: Path, header: list[str], schemas: dict[str, list[str]]) -> LeaderboardError:
    """The one-line error for a header that is no known schema: the missing (and unexpected)
    columns against the nearest schema, which is named by ``schemas``' key (its kind and task)."""
    got = set(header)

    def distance(cols: list[str]) -> tuple[int, int]:
        return len(set(cols) ^ got), len(set(cols) - got)

    name, cols = min(schemas.items(), key=lambda item: distance(item[1]))
    missing = [c for c in cols if c not in got]
    unexpected = [c for c in header if c not in cols]
    parts = []
    if missing:
        parts.append(f"missing column(s) {', '.join(missing)}")
    if unexpected:
        parts.append(f"unexpected column(s) {', '.join(unexpected)}")
    if not parts:
        parts.append("columns out of order")
    return LeaderboardError(f"{p}:1: header matches no leaderboard schema; nearest is the {name} schema: "
                            f"{'; '.join(parts)} (its header: {','.join(cols)})")


def fmt_number(x: Any) -> str:
    """A number as a leaderboard prints it: :data:`DECIMALS` decimals, "" for none, never "-0.00"."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return ""
    s = f"{float(x):.{DECIMALS}f}"
    return "0." + "0" * DECIMALS if s == "-0." + "0" * DECIMALS else s  # no "-0.00"

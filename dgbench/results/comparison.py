"""The paper's Table 7: GTA5 -> Cityscapes gains of domain adaptation beside IBN-Net's, and ours.

Table 7 compares "source only -> improved" mIoU pairs: three domain-adaptation methods that
use (unlabelled) Cityscapes images, and IBN-Net's ResNet-50 -> IBN-a, which uses none. Its
rows do not fit a leaderboard schema (each is a pair of models, not a model under a
condition), so they live in their own small file, ``leaderboards/paper/comparisons/*.csv``
(header :data:`HEADER`), validated by :func:`load_comparisons`.

:func:`comparison_table` puts them beside the measured rows of a fine-tune table: for every
measured baseline model whose IBN-a (or -b) version was measured too, the two *source only*
numbers (fraction 0: the source model on the target before fine-tuning), their gain, and
"without" target data, e.g. ``deeplab_small_resnet / deeplab_small_resnet_ibn_a``.
"""
from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

import pandas as pd

from .frame import MEASURED
from .csvio import LeaderboardError
from .tabledata import TableData, fmt_stat

HEADER = ["train_domain", "test_domain", "method", "baseline_miou_pct", "improved_miou_pct", "gain_pct",
          "target_data", "source", "note"]
TARGET_DATA = ("with", "without")
IBN_SUFFIXES = ("_ibn_a", "_ibn_b")
GAIN_SLACK = 0.05  # the paper rounds the gain of 22.17 -> 29.64 to 7.5


def comparison_files() -> list[Path]:
    from ..config import data_dir

    folder = data_dir("leaderboards") / "paper" / "comparisons"
    return sorted(folder.glob("*.csv")) if folder.is_dir() else []


def load_comparisons(paths: list[Path] | None = None) -> pd.DataFrame:
    """Every comparison row; a malformed file raises :class:`LeaderboardError` naming file and line."""
    rows = []
    for p in comparison_files() if paths is None else paths:
        with open(p, newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            header = next(reader, None)
            if header != HEADER:
                raise LeaderboardError(f"{p}:1: header must be {','.join(HEADER)}")
            for row in reader:
                if any(c.strip() for c in row):
                    rows.append(_parse(p, reader.line_num, dict(zip(HEADER, (c.strip() for c in row))), len(row)))
    return pd.DataFrame(rows, columns=HEADER)


def _parse(p: Path, line: int, rec: dict[str, Any], width: int) -> dict[str, Any]:
    def bad(col: str, why: str) -> LeaderboardError:
        return LeaderboardError(f"{p}:{line}: column {col!r}: {why}")

    if width != len(HEADER):
        raise LeaderboardError(f"{p}:{line}: {width} fields, the header has {len(HEADER)}")
    for col in ("baseline_miou_pct", "improved_miou_pct", "gain_pct"):
        try:
            rec[col] = float(rec[col])
        except ValueError:
            raise bad(col, f"{rec[col]!r} is not a number") from None
        lo = -100.0 if col == "gain_pct" else 0.0
        if not (math.isfinite(rec[col]) and lo <= rec[col] <= 100.0):
            raise bad(col, f"{rec[col]} is not in [{lo:g}, 100] (percent)")
    if abs(rec["improved_miou_pct"] - rec["baseline_miou_pct"] - rec["gain_pct"]) > GAIN_SLACK:
        raise bad("gain_pct", f"{rec['gain_pct']} is not improved minus baseline "
                              f"({rec['improved_miou_pct'] - rec['baseline_miou_pct']:.2f})")
    if rec["target_data"] not in TARGET_DATA:
        raise bad("target_data", f"{rec['target_data']!r}: expected with or without")
    return rec


def _pct(x: float) -> str:
    return f"{x:g}"


def measured_rows(group: pd.DataFrame) -> list[list[str]]:
    """``[method, source, baseline / improved, gain, target data]`` per measured (baseline, IBN) pair."""
    only = group[(group["source"] == MEASURED) & (group["fraction"] == "0") & (group["model_kwargs"] == "")]
    by = {(r["model"], r["train_domain"], r["test_domain"]): r for _, r in only.iterrows()}
    rows = []
    for (model, train, test), ibn in sorted(by.items()):
        base_name = next((model[: -len(s)] for s in IBN_SUFFIXES if model.endswith(s)), None)
        base = by.get((base_name, train, test)) if base_name else None
        if base is None:
            continue
        gain = ibn["miou"] - base["miou"]
        rows.append([f"{base_name} / {model} source only ({train} → {test})", MEASURED,
                     f"{fmt_stat(base['miou'])} / {fmt_stat(ibn['miou'])}", fmt_stat(gain), "without"])
    return rows


def comparison_table(group: pd.DataFrame) -> list[TableData]:
    """Table 7 (paper rows) and the measured source-only gains of a fine-tune summary group."""
    paper = load_comparisons()
    rows = [[f"{r['method']} ({r['train_domain']} → {r['test_domain']})", "paper",
             f"{_pct(r['baseline_miou_pct'])} / {_pct(r['improved_miou_pct'])}", _pct(r["gain_pct"]), r["target_data"]]
            for _, r in paper.iterrows()]
    mine = measured_rows(group) if not group.empty else []
    if not rows and not mine:
        return []
    return [TableData(
        title="source only → improved, mIoU % (the paper's Table 7: domain adaptation vs IBN-Net)",
        columns=["method", "source", "mIoU (source only / improved)", "gain", "target data"],
        rows=mine + rows, sources=[MEASURED] * len(mine) + ["paper"] * len(rows),
        caption="domain adaptation uses the target's images; IBN-a's gain over ResNet-50 uses none",
    )]

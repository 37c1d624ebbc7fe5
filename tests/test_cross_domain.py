"""Cross-domain protocol (generic 2x2, digits instance) and the built-in honesty check of IBN-b."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from dgbench.data.base import Preprocess, build_dataset
from dgbench.errors import DgbenchError
from dgbench.models.small import load_builtin
from dgbench.protocols.cross_domain import (
    Domain,
    Evaluation,
    cross_domain,
    run_cross_domain,
)
from dgbench.results.store import ResultStore
from dgbench.results.tables import render_table


class _Tagged(nn.Module):
    def __init__(self, tag: str):
        super().__init__()
        self.tag = tag
        self.weights_sha256 = f"sha-{tag}"


class _Set(list):
    def __init__(self, name: str):
        super().__init__([0])
        self.name = name

    def fingerprint(self) -> str:
        return f"fp-{self.name}"


# Made-up scores: rows = train domain, columns = test domain (mIoU-like, higher is better).
_SCORES = {("A", "A"): 60.0, ("A", "B"): 30.0, ("B", "B"): 50.0, ("B", "A"): 20.0}


def _fake_eval(calls: list):
    def evaluate(model, ds):
        calls.append((model.tag, ds.name))
        return Evaluation(metrics={"miou": _SCORES[(model.tag, ds.name)]}, num_samples=7)

    return evaluate


def _domains():
    return [Domain(n, (lambda n=n: _Tagged(n)), _Set(n)) for n in ("A", "B")]


def test_generic_2x2_order_reference_drop_and_store(tmp_path):
    store = ResultStore(tmp_path)
    calls: list = []
    recs = cross_domain("net", _domains(), _fake_eval(calls), task="segmentation", store=store)
    assert [(r["train_domain"], r["test_domain"]) for r in recs] == [("A", "A"), ("A", "B"), ("B", "B"), ("B", "A")]
    by = {(r["train_domain"], r["test_domain"]): r for r in recs}
    assert by[("A", "A")]["reference"] is None and by[("A", "A")]["drop"] == {}
    # cross minus the row's in-domain cell: A->B (30) vs A->A (60), B->A (20) vs B->B (50)
    assert by[("A", "B")]["reference"] == "A" and by[("A", "B")]["drop"] == {"miou": -30.0}
    assert by[("B", "A")]["reference"] == "B" and by[("B", "A")]["drop"] == {"miou": -30.0}
    assert all(r["protocol"] == "cross-domain" and r["task"] == "segmentation" for r in recs)
    assert by[("A", "B")]["weights_sha256"] == "sha-A" and by[("A", "B")]["dataset_fingerprint"] == "fp-B"
    assert len(store.records("cross-domain")) == 4 and len(calls) == 4
    # A second run reuses every stored cell: nothing evaluated, nothing appended.
    again = cross_domain("net", _domains(), _fake_eval(calls), task="segmentation", store=store)
    assert len(calls) == 4 and len(store.records("cross-domain")) == 4
    assert [r["key"] for r in again] == [r["key"] for r in recs]


def test_generic_needs_two_distinct_domains():
    d = _domains()
    with pytest.raises(DgbenchError):
        cross_domain("net", [d[0], d[0]], _fake_eval([]), task="classification")


def test_digits_cross_domain_2x2_is_sane(tmp_path):
    recs = run_cross_domain("ibn_a", "digits", results=tmp_path)
    assert len(recs) == 4 and {r["model"] for r in recs} == {"small_resnet_ibn_a"}
    by = {(r["train_domain"], r["test_domain"]): r for r in recs}
    for (tr, te), r in by.items():
        m = r["metrics"]
        assert 0.0 <= m["top1_acc"] <= 100.0 and abs(m["top1_acc"] + m["top1_err"] - 100.0) < 1e-9
        assert r["num_samples"] == 599 and r["dataset"] == te
    # In-domain: well above chance (10 %); the shipped models reach about 98 % on their own domain.
    assert by[("digits", "digits")]["metrics"]["top1_acc"] > 90
    assert by[("typeset-digits", "typeset-digits")]["metrics"]["top1_acc"] > 90
    cross = by[("digits", "typeset-digits")]
    assert cross["reference"] == "digits"
    assert cross["drop"]["top1_acc"] == pytest.approx(
        cross["metrics"]["top1_acc"] - by[("digits", "digits")]["metrics"]["top1_acc"])
    assert len(ResultStore(tmp_path).records("cross-domain")) == 4
    assert "small_resnet_ibn_a" in _render(render_table(recs, kind="cross-domain", fmt="rich"))


def _render(table) -> str:
    from rich.console import Console

    con = Console(width=200, record=True)
    con.print(table)
    return con.export_text()


def test_ibn_b_std_x1p5_drop_is_exactly_zero_on_builtin_data():
    from dgbench.engine import EngineConfig, evaluate
    from dgbench.protocols import get_shift

    shifts = [get_shift("origin"), get_shift("std-x1.5")]
    cfg = EngineConfig(device="cpu", batch_size=128, workers=0, progress=False)
    b = load_builtin("ibn_b", "digits")
    ds = build_dataset("digits", split="test", preprocess=Preprocess.from_cfg(b.pretrained_cfg))
    res = evaluate(b, ds, shifts, config=cfg)
    assert res.counts["origin"].n == 599
    assert res.counts["std-x1.5"].correct == res.counts["origin"].correct  # drop 0.00, top-1 and top-5
    # The plain model is not invariant: its logits move under the same shift.
    base = load_builtin("baseline", "digits")
    x = torch.stack([ds[i][0] for i in range(64)]).float() / 255
    mean = torch.tensor(base.pretrained_cfg.mean).view(1, 3, 1, 1)
    std = torch.tensor(base.pretrained_cfg.std).view(1, 3, 1, 1)
    z = (x - mean) / std
    with torch.no_grad():
        assert (base(1.5 * z) - base(z)).abs().max() > 1e-2
        assert torch.allclose(b(1.5 * z), b(z), rtol=1e-4, atol=1e-4)

"""Segmentation's per-image confusion counts and the mIoU intervals made from them.

The bootstrap is checked against a hand-written loop (same draws, every sum and IoU by hand), on
data with a class absent from every image and on an all-correct case; the per-image counts a run
keeps sum to its record's numbers exactly; they are written with the record (never a record
without them); `dgbench table` shows the intervals and says what they are."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from dgbench.builtin.digit_scenes import DigitScenes
from dgbench.cli import app
from dgbench.metrics import stats
from dgbench.metrics.segmentation import ConfusionMatrix, class_counts, metrics_from_counts, segmentation_metrics
from dgbench.models import create_model
from dgbench.protocols.cross_domain import Domain, cross_domain
from dgbench.protocols.segmentation import segmentation_evaluate
from dgbench.results import outcomes, seg_intervals
from dgbench.results.store import ResultStore

DOMAINS = ("digit-scenes", "typeset-digit-scenes")

# 6 images x 4 classes of (tp, gt, pred) counts; class 3 is absent from every image
TP = np.array([[5, 0, 2, 0], [3, 1, 0, 0], [0, 4, 4, 0], [7, 0, 1, 0], [2, 2, 2, 0], [0, 0, 6, 0]])
GT = TP + np.array([[1, 0, 3, 0], [2, 0, 1, 0], [0, 2, 1, 0], [0, 3, 0, 0], [1, 1, 1, 0], [4, 0, 0, 0]])
PRED = TP + np.array([[0, 2, 1, 0], [1, 1, 0, 0], [3, 0, 0, 0], [0, 0, 2, 0], [1, 1, 0, 0], [0, 2, 2, 0]])


def loop_replicates(tp, gt, pred, n_boot: int, seed: int, chunk: int) -> dict[str, list[float]]:
    """The bootstrap written out: the same draws as seg_replicates, every sum and ratio by hand."""
    rng = np.random.default_rng(seed)
    n, c = len(tp), len(tp[0])
    out: dict[str, list[float]] = {"miou": [], "pixel_acc": []}
    for start in range(0, n_boot, chunk):
        for draw in rng.integers(0, n, size=(min(chunk, n_boot - start), n)):
            s_tp, s_gt, s_pred = [0] * c, [0] * c, [0] * c
            for i in draw:
                for k in range(c):
                    s_tp[k] += int(tp[i][k])
                    s_gt[k] += int(gt[i][k])
                    s_pred[k] += int(pred[i][k])
            ious = [s_tp[k] / (s_gt[k] + s_pred[k] - s_tp[k]) for k in range(c) if s_gt[k] + s_pred[k] - s_tp[k] > 0]
            out["miou"].append(sum(ious) / len(ious) if ious else math.nan)
            out["pixel_acc"].append(sum(s_tp) / sum(s_gt) if sum(s_gt) else math.nan)
    return out


@pytest.mark.parametrize("chunk", [7, 250])
def test_bootstrap_equals_a_hand_written_loop_with_an_absent_class(chunk: int) -> None:
    reps = stats.seg_replicates(TP, GT, PRED, n_boot=60, seed=3, chunk=chunk)
    want = loop_replicates(TP.tolist(), GT.tolist(), PRED.tolist(), n_boot=60, seed=3, chunk=chunk)
    for m in ("miou", "pixel_acc"):
        assert reps[m] == pytest.approx(want[m], rel=1e-12, abs=0)
    got = stats.seg_bootstrap(TP, GT, PRED, n_boot=60, seed=3)
    whole = metrics_from_counts(TP.sum(0), GT.sum(0), PRED.sum(0))
    assert got["miou"][0] == pytest.approx(whole.miou, rel=1e-12) and whole.num_valid_classes == 3  # class 3 left out
    assert got["pixel_acc"][0] == pytest.approx(whole.pixel_acc, rel=1e-12)
    # the percentile interval, by hand: sorted replicates, linear interpolation at 2.5 % and 97.5 %
    s = sorted(want["miou"])
    pos = [0.025 * (len(s) - 1), 0.975 * (len(s) - 1)]
    hand = [s[int(p)] + (p - int(p)) * (s[min(int(p) + 1, len(s) - 1)] - s[int(p)]) for p in pos]
    assert got["miou"][1:] == pytest.approx(hand, rel=1e-12)


def test_all_correct_and_empty_cases() -> None:
    tp = np.array([[4, 0, 9], [1, 2, 0], [0, 3, 3]])
    got = stats.seg_bootstrap(tp, tp, tp, n_boot=200)
    assert got == {"miou": (1.0, 1.0, 1.0), "pixel_acc": (1.0, 1.0, 1.0)}
    zero = np.zeros((3, 4), dtype=np.int64)  # no valid pixel anywhere: nothing defined
    assert all(math.isnan(v) for v in stats.seg_bootstrap(zero, zero, zero, n_boot=20)["miou"])


def test_independent_difference_interval_by_hand() -> None:
    a = np.arange(101) / 100.0  # differences 0, 0.01, ..., 1: the 2.5 % and 97.5 % points are 0.025, 0.975
    lo, hi = stats.independent_diff(a, np.zeros(101))
    assert (lo, hi) == pytest.approx((0.025, 0.975))
    with pytest.raises(ValueError, match="as many replicates"):
        stats.independent_diff(a, a[:5])


def test_per_image_counts_sum_to_the_confusion_matrix() -> None:
    rng = np.random.default_rng(0)
    cm = ConfusionMatrix(5, images=4)
    for i in range(4):
        target = rng.integers(0, 6, size=(9, 9))
        target[target == 5] = 255  # ignored ground truth
        cm.update(rng.integers(-1, 7, size=(9, 9)), target, image=i)  # -1, 5, 6: void predictions
    per = cm.per_image()
    assert per is not None and per.evaluated.all() and per.tp.dtype == np.int64
    tp, gt, pred = class_counts(cm.table()).numpy()
    assert [t.tolist() for t in per.totals()] == [tp.tolist(), gt.tolist(), pred.tolist()]
    whole, summed = segmentation_metrics(cm.table()), metrics_from_counts(*per.totals())
    assert (summed.miou, summed.pixel_acc) == (whole.miou, whole.pixel_acc)
    assert ConfusionMatrix(5).per_image() is None


def test_sharded_counts_merge_in_dataset_order(monkeypatch: pytest.MonkeyPatch) -> None:
    from dgbench.engine.segmentation import evaluate_segmentation
    from dgbench.runtime import Runtime

    torch.manual_seed(0)
    net, ds = create_model("deeplab_small_resnet"), DigitScenes("digit-scenes", "test", n=5)
    whole = evaluate_segmentation(net, ds, per_image=True)[1].per_image()
    monkeypatch.setattr(torch.distributed, "all_reduce", lambda t: None)  # each rank keeps its own rows
    parts = [evaluate_segmentation(net, ds, per_image=True, runtime=Runtime(torch.device("cpu"), r, 2))[1].per_image()
             for r in range(2)]
    for r, part in enumerate(parts):  # rank r counted images r, r + 2, ... and nothing else
        assert np.flatnonzero(part.gt.sum(1)).tolist() == list(range(r, 5, 2))
    # what the all-reduce sums: zero where a rank saw nothing, so the sum is the merge
    assert all((sum(getattr(p, a) for p in parts) == getattr(whole, a)).all() for a in ("tp", "gt", "pred"))


def _run(root: Path, **kw) -> list[dict]:
    torch.manual_seed(0)
    net = create_model("deeplab_small_resnet")
    domains = [Domain(d, lambda: net, DigitScenes(d, "test", n=6)) for d in DOMAINS]
    return cross_domain("deeplab_small_resnet", domains, segmentation_evaluate(**kw), task="segmentation",
                        store=ResultStore(root))


def test_counts_are_stored_with_each_record_and_sum_to_it(tmp_path: Path) -> None:
    root = tmp_path / "res"
    records = _run(root)
    stored = ResultStore(root).records("cross-domain")
    assert len(stored) == 4
    files = sorted(p.stem for p in (root / "outcomes" / "cross-domain").glob("*.npz"))
    assert files == sorted(r["key"] for r in stored)  # one file per record, nothing else
    for rec in records:
        counts, order = outcomes.read(root, "cross-domain", rec["key"])
        assert isinstance(counts, outcomes.SegImageCounts) and len(counts) == 6 and counts.num_classes == 11
        assert order == outcomes.order_hash(f"{rec['test_domain']}_test_{i:05d}" for i in range(6))
        got = metrics_from_counts(*counts.totals(), rec["per_class_iou"].keys()).as_record_metrics()
        assert got["miou"] == rec["metrics"]["miou"] and got["pixel_acc"] == rec["metrics"]["pixel_acc"]  # exactly
        assert got["per_class_iou"] == rec["per_class_iou"]
    frame = outcomes.load(root, "cross-domain")
    assert len(frame) == 4 * 6 * 11 and {"class", "tp", "gt", "pred"} <= set(frame.columns)
    assert set(frame["condition"]) == {f"{a}->{b}" for a in DOMAINS for b in DOMAINS}


def test_never_a_record_without_its_counts_and_opt_out(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def killed(*a, **kw):
        raise KeyboardInterrupt  # as if SIGKILL arrived while writing a counts file

    with monkeypatch.context() as m:
        m.setattr(outcomes, "write", killed)
        with pytest.raises(KeyboardInterrupt):
            _run(tmp_path / "a")
    assert not ResultStore(tmp_path / "a").records("cross-domain")
    _run(tmp_path / "off", per_image=False)  # what --no-outcomes asks for
    assert len(ResultStore(tmp_path / "off").records("cross-domain")) == 4
    assert not (tmp_path / "off" / "outcomes").exists()


def test_table_shows_miou_and_drop_intervals(tmp_path: Path) -> None:
    root = tmp_path / "res"
    records = _run(root)
    args = ["table", "--protocol", "cross-domain", "--results", str(root), "--format", "markdown"]
    res = CliRunner().invoke(app, args + ["--metric", "miou"])
    assert res.exit_code == 0, res.output
    assert "resampled independently" in res.output and "percentile bootstrap" in res.output
    cells = {(r["train_domain"], r["test_domain"]): r for r in records}
    own, cross = cells[(DOMAINS[0], DOMAINS[0])], cells[(DOMAINS[0], DOMAINS[1])]
    # the cross cell's drop interval, from the two cells' counts bootstrapped independently
    reps = {}
    for rec, seed in ((own, seg_intervals.OWN_SEED), (cross, seg_intervals.DROP_SEED)):
        c = outcomes.read(root, "cross-domain", rec["key"])[0]
        reps[seed] = stats.seg_replicates(c.tp, c.gt, c.pred, n_boot=seg_intervals.N_BOOT, seed=seed)["miou"]
    lo, hi = np.percentile(100 * (reps[0] - reps[1]), [2.5, 97.5])
    drop = own["metrics"]["miou"] - cross["metrics"]["miou"]
    assert lo <= drop <= hi
    assert f"{drop:.2f} [{lo:.1f}, {hi:.1f}]" in res.output, res.output
    plain = CliRunner().invoke(app, args + ["--no-intervals"])
    assert plain.exit_code == 0 and "[" not in plain.output.replace("[first", "") and "bootstrap" not in plain.output


def test_cli_run_keeps_counts_unless_no_outcomes(tmp_path: Path) -> None:
    args = ["run", "--model", "ibn_b", "--protocol", "cross-domain", "--dataset", "digit-scenes", "--limit", "3",
            "--no-progress"]
    res = CliRunner().invoke(app, [*args, "--results", str(tmp_path / "on")], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    assert "resampled independently" in res.output
    for rec in ResultStore(tmp_path / "on").records("cross-domain"):
        counts = outcomes.read(tmp_path / "on", "cross-domain", rec["key"])[0]
        assert counts.evaluated.sum() == 3 and len(counts) == 200  # --limit: the first 3 scenes
        assert not counts.tp[3:].any()
    res = CliRunner().invoke(app, [*args, "--results", str(tmp_path / "off"), "--no-outcomes"])
    assert res.exit_code == 0, res.output
    assert len(ResultStore(tmp_path / "off").records("cross-domain")) == 4
    assert not (tmp_path / "off" / "outcomes").exists()

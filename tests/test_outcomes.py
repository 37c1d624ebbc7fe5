"""Per-image outcomes: kept by the engine in dataset order (also when sharded), written beside the
record before it (never a record without them), read back as a frame; --no-outcomes opts out."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from appearance_fixtures import env_isolated, folder_tree, small
from dgbench.engine import EngineConfig, evaluate
from dgbench.metrics.outcomes import SampleOutcomes
from dgbench.protocols import get_shift
from dgbench.protocols.appearance import run_protocol
from dgbench.results import outcomes
from dgbench.results.store import ResultStore
from dgbench.runtime import Runtime
from test_engine import MeanColourNet, ToyDataset


def direct(ds: ToyDataset, shift: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    from dgbench.shifts import apply_affine, normalize

    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    logits = MeanColourNet()(apply_affine(normalize(ds.x, mean, std), get_shift(shift), mean, std))
    top = logits.topk(5, dim=1).indices
    return top[:, 0].numpy(), (top[:, 0] == ds.y).numpy(), (top == ds.y[:, None]).any(1).numpy()


@pytest.mark.parametrize("batch_size", [1, 4, 64])
def test_engine_keeps_every_images_prediction_and_hits(batch_size: int) -> None:
    ds = ToyDataset(11)
    shifts = [get_shift(n) for n in ("origin", "rgb+50")]
    cfg = EngineConfig(device="cpu", batch_size=batch_size, workers=0, progress=False, outcomes=True)
    res = evaluate(MeanColourNet(), ds, shifts, config=cfg)
    for s in shifts:
        out = res.outcomes[s.name]
        pred, top1, top5 = direct(ds, s.name)
        assert out.evaluated.all() and (out.pred == pred).all()
        assert (out.correct[1] == top1).all() and (out.correct[5] == top5).all()
        assert out.counts() == res.counts[s.name].correct  # the integer counts, unchanged
    plain = evaluate(MeanColourNet(), ds, shifts, config=EngineConfig(device="cpu", batch_size=batch_size, workers=0, progress=False))
    assert plain.outcomes is None and {k: v.correct for k, v in plain.counts.items()} == {k: v.correct for k, v in res.counts.items()}


def test_sharded_outcomes_sum_to_the_single_process_ones_in_sample_order(monkeypatch: pytest.MonkeyPatch) -> None:
    ds = ToyDataset(11)
    shifts = [get_shift("origin"), get_shift("std-x1.5")]
    cfg = EngineConfig(device="cpu", batch_size=3, workers=0, progress=False, outcomes=True)
    whole = evaluate(MeanColourNet(), ds, shifts, config=cfg).outcomes
    monkeypatch.setattr(torch.distributed, "all_reduce", lambda t: None)  # each rank's own table
    parts = [evaluate(MeanColourNet(), ds, shifts, config=cfg, runtime=Runtime(torch.device("cpu"), r, 3)).outcomes
             for r in range(3)]
    for s in shifts:
        for r, part in enumerate(parts):  # rank r saw images r, r+3, ... and nothing else
            assert np.flatnonzero(part[s.name].evaluated).tolist() == list(range(r, 11, 3))
        # what the all-reduce sums: zero where a rank saw nothing, so the sum is the merge
        assert (sum(p[s.name].pred + 1 for p in parts) - 1 == whole[s.name].pred).all()
        for k in (1, 5):
            assert (sum(p[s.name].correct[k].astype(int) for p in parts) == whole[s.name].correct[k]).all()


def test_file_round_trip_and_size() -> None:
    rng = np.random.default_rng(0)
    n = 1003  # not a multiple of 8: the bitsets' padding must not become images
    out = SampleOutcomes(evaluated=rng.random(n) < 0.99, pred=rng.integers(0, 1000, n),
                         correct={1: rng.random(n) < 0.7, 5: rng.random(n) < 0.9})
    out.pred[~out.evaluated] = -1
    data = outcomes.encode(out, "abc")
    assert len(data) < 4000  # bits for the correctness, int16 for 1000 classes, compressed
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        outcomes.write(d, "p", "k1", out, "abc")
        back, order = outcomes.read(d, "p", "k1")
        assert order == "abc" and len(back) == n
        assert (back.evaluated == out.evaluated).all() and (back.pred == out.pred).all()
        assert all((back.correct[k] == out.correct[k]).all() for k in (1, 5))
        assert [p.name for p in Path(d, "outcomes", "p").iterdir()] == ["k1.npz"]  # no temp file left
        assert outcomes.read(d, "p", "missing") is None
        Path(d, "outcomes", "p", "k1.npz").write_bytes(b"garbage")
        from dgbench.errors import DgbenchError

        with pytest.raises(DgbenchError, match=r"k1\.npz: unreadable per-image outcomes"):
            outcomes.read(d, "p", "k1")


def test_a_file_is_decoded_once_per_version_and_shared_read_only(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    out = SampleOutcomes(evaluated=np.ones(50, bool), pred=rng.integers(0, 10, 50),
                         correct={1: rng.random(50) < 0.5, 5: rng.random(50) < 0.9})
    outcomes.write(tmp_path, "p", "k", out, "abc")
    first, again = outcomes.read(tmp_path, "p", "k"), outcomes.read(tmp_path, "p", "k")
    assert first[0] is again[0]  # a table reads a reference run's file once per row and metric
    with pytest.raises(ValueError, match="read-only"):
        first[0].correct[1][0] = not first[0].correct[1][0]
    flipped = SampleOutcomes(out.evaluated, out.pred, {1: ~out.correct[1], 5: out.correct[5]})
    outcomes.write(tmp_path, "p", "k", flipped, "abc")  # rerun with --force: replaced by rename
    (now, _) = outcomes.read(tmp_path, "p", "k")
    assert (now.correct[1] == ~out.correct[1]).all()


def _run(tmp_path: Path, **kw):
    model = small("resnet18", size=32)
    return run_protocol(model, "appearance-lite", data=tmp_path / "val", workers=0, progress=False, pretrained=False, **kw)


def test_a_run_writes_outcomes_beside_each_record_and_load_reads_them(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env_isolated(monkeypatch, tmp_path)
    folder_tree(tmp_path / "val", [0, 1, 2, 0, 1])
    summary = _run(tmp_path, batch_size=2)
    root = tmp_path / "results"
    assert sorted(p.stem for p in (root / "outcomes" / "appearance-lite").iterdir()) == sorted(r["key"] for r in summary.records)
    frame = outcomes.load(root, "appearance-lite")
    assert len(frame) == 5 * len(summary.records)  # one row per image per condition
    for rec in summary.records:
        rows = frame[frame.condition == rec["shift"]]
        assert rows["sample"].tolist() == [0, 1, 2, 3, 4]
        assert 100 * (1 - rows.top1_correct.mean()) == pytest.approx(rec["metrics"]["top1_err"])
        assert 100 * (1 - rows.top5_correct.mean()) == pytest.approx(rec["metrics"]["top5_err"])
    assert len(outcomes.load(root, "appearance-lite", model="nothing-like-it")) == 0


def test_no_outcomes_opts_out_and_other_kinds_reject_the_flag(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env_isolated(monkeypatch, tmp_path)
    folder_tree(tmp_path / "val", [0, 1, 2])
    summary = _run(tmp_path, options={"no_outcomes": True})
    assert summary.computed == 4 and not (tmp_path / "results" / "outcomes").exists()
    from dgbench.errors import DgbenchError
    from dgbench.protocols import RunRequest, run

    with pytest.raises(DgbenchError, match="--no-outcomes: not used by the cross-domain protocol"):
        run("cross-domain", RunRequest(model="small_resnet", options={"no_outcomes": True}, progress=False))


def test_never_a_record_without_its_outcomes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Killed after the outcomes and before the record: an orphan file, which readers ignore, and the
    rerun stores both. Killed while writing an outcome file: no record at all."""
    env_isolated(monkeypatch, tmp_path)
    folder_tree(tmp_path / "val", [0, 1, 2])
    root = tmp_path / "results"

    def killed(self, records):
        raise KeyboardInterrupt  # as if SIGKILL arrived between the two writes

    with monkeypatch.context() as m:
        m.setattr(ResultStore, "append", killed)
        with pytest.raises(KeyboardInterrupt):
            _run(tmp_path, shifts=["origin"])
    assert len(list((root / "outcomes" / "appearance-lite").iterdir())) == 1 and not ResultStore(root).records()
    assert len(outcomes.load(root, "appearance-lite")) == 0  # the orphan is not read

    real_write, calls = outcomes.write, {"n": 0}

    def dies_on_second(*a, **kw):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real_write(*a, **kw)

    with monkeypatch.context() as m:
        m.setattr(outcomes, "write", dies_on_second)
        with pytest.raises(KeyboardInterrupt):
            _run(tmp_path, shifts=["rgb+50"])  # origin is not stored, so origin and rgb+50 are computed
    assert not ResultStore(root).records()
    summary = _run(tmp_path)
    assert summary.computed == 4
    assert all(outcomes.read(root, "appearance-lite", r["key"]) is not None for r in ResultStore(root).records())


def test_storage_per_record_at_imagenet_scale() -> None:
    """50k images, 1000 classes, 77 % top-1: the figure the README quotes (about 86 KB a record,
    most of it the predicted classes; the correctness bitsets alone about 10 KB)."""
    rng = np.random.default_rng(0)
    n = 50_000
    labels = rng.permutation(np.repeat(np.arange(1000), 50))
    c1 = rng.random(n) < 0.774
    c5 = c1 | (rng.random(n) < 0.7)
    pred = np.where(c1, labels, (labels + rng.integers(1, 1000, n)) % 1000)
    full = len(outcomes.encode(SampleOutcomes(np.ones(n, bool), pred, {1: c1, 5: c5}), "0" * 64))
    bits = len(outcomes.encode(SampleOutcomes(np.ones(n, bool), np.zeros(n, int), {1: c1, 5: c5}), "0" * 64))
    assert 70_000 < full < 100_000 and 6_000 < bits < 16_000


def test_cli_no_outcomes_flag(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from dgbench.cli import app

    env_isolated(monkeypatch, tmp_path)
    root = folder_tree(tmp_path / "val", [0, 1])
    args = ["run", "--model", "resnet18", "--protocol", "appearance-lite", "--data", str(root), "--no-pretrained",
            "--no-progress", "--workers", "0", "--shifts", "origin"]
    res = CliRunner().invoke(app, [*args, "--results", str(tmp_path / "off"), "--no-outcomes"])
    assert res.exit_code == 0, res.output
    assert len(ResultStore(tmp_path / "off").records()) == 1 and not (tmp_path / "off" / "outcomes").exists()
    res = CliRunner().invoke(app, [*args, "--results", str(tmp_path / "on")])
    assert res.exit_code == 0 and len(outcomes.load(tmp_path / "on", "appearance-lite")) == 2


def test_cli_run_intervals(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from dgbench.cli import app

    env_isolated(monkeypatch, tmp_path)
    root = folder_tree(tmp_path / "val", [0, 1, 2, 0])
    args = ["run", "--model", "resnet18", "--protocol", "appearance-lite", "--data", str(root), "--no-pretrained",
            "--no-progress", "--workers", "0", "--shifts", "rgb+50", "--results", str(tmp_path / "r")]
    plain = CliRunner().invoke(app, [*args, "--no-intervals"], env={"COLUMNS": "80"})
    assert plain.exit_code == 0 and "Wilson" not in plain.output
    res = CliRunner().invoke(app, args, env={"COLUMNS": "80"})  # intervals are the default
    assert res.exit_code == 0, res.output
    assert "Wilson" in res.output and "[" in res.output and max(len(x) for x in res.output.splitlines()) <= 80

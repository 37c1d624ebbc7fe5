"""Exact top-k counting, the batched loop, sharding, corrupt images, and resume/skip of stored work."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from appearance_fixtures import env_isolated, folder_tree, small
from dgbench.engine import EngineConfig, evaluate, shard_indices
from dgbench.errors import CorruptImageError
from dgbench.metrics.classification import TopKCounts, topk_correct
from dgbench.protocols import get_shift
from dgbench.protocols.appearance import run_protocol
from dgbench.results.store import ResultStore


def test_topk_on_hand_made_logits() -> None:
    logits = torch.tensor([
        [0.9, 0.1, 0.0, 0.0, 0.0, 0.0, 0.0],  # target 0: top-1 hit
        [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7],  # target 2: 5th best -> top-5 hit only
        [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7],  # target 1: 6th best -> miss
        [0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0],  # target 3: hit
    ])
    target = torch.tensor([0, 2, 1, 3])
    assert topk_correct(logits, target, (1, 5)) == {1: 2, 5: 3}
    # k above the number of classes counts every row
    assert topk_correct(logits[:3, :3], torch.tensor([0, 2, 1]), (1, 5)) == {1: 2, 5: 3}


def test_counts_with_a_smaller_last_batch_equal_one_big_batch() -> None:
    g = torch.Generator().manual_seed(0)
    logits, target = torch.randn(10, 7, generator=g), torch.randint(0, 7, (10,), generator=g)
    whole = TopKCounts()
    whole.update(logits, target)
    parts = TopKCounts()
    for i in range(0, 10, 4):  # batches of 4, 4, 2
        parts.update(logits[i:i + 4], target[i:i + 4])
    assert (parts.n, parts.correct) == (whole.n, whole.correct) == (10, whole.correct)
    errs = parts.errors()
    assert errs["top1_err"] == pytest.approx(100 * (1 - whole.correct[1] / 10))


class MeanColourNet(nn.Module):
    """Logits = the three channel means and their negatives: deterministic, batch-independent."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = x.float().mean(dim=(2, 3))
        return torch.cat([m, -m], dim=1)


class ToyDataset(torch.utils.data.Dataset):
    name = "toy"
    num_classes = 6

    def __init__(self, n: int = 11):
        g = torch.Generator().manual_seed(1)
        self.x = torch.randint(0, 256, (n, 3, 8, 8), generator=g, dtype=torch.uint8)
        self.y = torch.randint(0, 6, (n,), generator=g)

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int):
        return self.x[i], int(self.y[i])

    def fingerprint(self) -> str:
        return "toy"


def direct_counts(ds: ToyDataset, shift_name: str) -> dict[int, int]:
    from dgbench.shifts import apply_affine, normalize

    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    x = apply_affine(normalize(ds.x, mean, std), get_shift(shift_name), mean, std)
    return topk_correct(MeanColourNet()(x), ds.y, (1, 5))


@pytest.mark.parametrize("batch_size", [1, 4, 64])
def test_evaluate_counts_every_image_once_whatever_the_batch_size(batch_size: int) -> None:
    ds = ToyDataset(11)
    shifts = [get_shift(n) for n in ("origin", "rgb+50", "std-x1.5")]
    res = evaluate(MeanColourNet(), ds, shifts, config=EngineConfig(device="cpu", batch_size=batch_size, workers=0, progress=False))
    assert res.num_samples == 11 and res.skipped_corrupt == 0
    for s in shifts:
        assert res.counts[s.name].n == 11
        assert res.counts[s.name].correct == direct_counts(ds, s.name)


def test_evaluate_with_workers_matches_in_process() -> None:
    ds = ToyDataset(9)
    shifts = [get_shift("origin"), get_shift("r+50")]
    a = evaluate(MeanColourNet(), ds, shifts, config=EngineConfig(device="cpu", batch_size=4, workers=0, progress=False))
    b = evaluate(MeanColourNet(), ds, shifts, config=EngineConfig(device="cpu", batch_size=2, workers=2, progress=False, channels_last=False))
    assert {k: v.correct for k, v in a.counts.items()} == {k: v.correct for k, v in b.counts.items()}


def test_compile_gives_the_eager_counts() -> None:
    ds = ToyDataset(11)  # batches of 4, 4, 3: the last one recompiles (dynamic=False)
    shifts = [get_shift("origin"), get_shift("std-x1.5")]
    res = evaluate(MeanColourNet(), ds, shifts,
                   config=EngineConfig(device="cpu", batch_size=4, workers=0, progress=False, compile=True))
    for s in shifts:
        assert res.counts[s.name].correct == direct_counts(ds, s.name)


def test_a_compile_failure_is_one_line_when_the_first_batch_compiles(monkeypatch: pytest.MonkeyPatch) -> None:
    """torch.compile is lazy: a missing C++ compiler shows in the first call, not in torch.compile()."""
    from torch._dynamo.exc import TorchDynamoException

    from dgbench.errors import DgbenchError

    def lazy_compile(model, **kw):
        def first_call(x):
            raise TorchDynamoException("InvalidCxxCompiler: No working C++ compiler found\n  (long traceback)")
        return first_call

    monkeypatch.setattr(torch, "compile", lazy_compile)
    cfg = EngineConfig(device="cpu", batch_size=4, workers=0, progress=False, compile=True)
    with pytest.raises(DgbenchError, match=r"^--compile: torch.compile failed \(TorchDynamoException: "
                                           r"InvalidCxxCompiler: No working C\+\+ compiler found\); run without --compile$"):
        evaluate(MeanColourNet(), ToyDataset(5), [get_shift("origin")], config=cfg)

    def model_error(model, **kw):  # an error of the model itself is not dressed up as a compile failure
        def call(x):
            raise ValueError("shape mismatch in the model")
        return call

    monkeypatch.setattr(torch, "compile", model_error)
    with pytest.raises(ValueError, match="shape mismatch"):
        evaluate(MeanColourNet(), ToyDataset(5), [get_shift("origin")], config=cfg)


def test_sharding_is_disjoint_complete_and_sums_to_the_single_process_counts(monkeypatch: pytest.MonkeyPatch) -> None:
    for n, w in ((10, 3), (2, 4), (0, 2)):
        shards = [shard_indices(n, r, w) for r in range(w)]
        assert sorted(i for s in shards for i in s) == list(range(n))
    ds = ToyDataset(11)
    shifts = [get_shift("origin"), get_shift("rgb+50")]
    cfg = EngineConfig(device="cpu", batch_size=3, workers=0, progress=False)
    whole = evaluate(MeanColourNet(), ds, shifts, config=cfg)
    from dgbench.runtime import Runtime

    monkeypatch.setattr(torch.distributed, "all_reduce", lambda t: None)  # sum by hand below
    total = {s.name: TopKCounts() for s in shifts}
    for rank in range(3):
        part = evaluate(MeanColourNet(), ds, shifts, config=cfg, runtime=Runtime(torch.device("cpu"), rank, 3))
        for s in shifts:
            total[s.name].n += part.counts[s.name].n
            for k, v in part.counts[s.name].correct.items():
                total[s.name].correct[k] += v
    for s in shifts:
        assert (total[s.name].n, total[s.name].correct) == (whole.counts[s.name].n, whole.counts[s.name].correct)


def _tree_with_corrupt(tmp_path: Path) -> tuple[Path, Path]:
    root = folder_tree(tmp_path / "val", [0, 1, 0, 1])
    bad = root / "n01443537" / "ILSVRC2012_val_00000009.JPEG"
    bad.write_bytes(b"\xff\xd8\xff\xe0 this is not a jpeg")
    return root, bad


def test_a_corrupt_image_fails_the_run_naming_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env_isolated(monkeypatch, tmp_path)
    root, bad = _tree_with_corrupt(tmp_path)
    model = small("resnet18", size=32)
    with pytest.raises(CorruptImageError, match="ILSVRC2012_val_00000009.JPEG"):
        run_protocol(model, "appearance-lite", data=root, workers=0, progress=False, pretrained=False)
    assert not ResultStore(tmp_path / "results").records(), "nothing partial may be written"


def test_skip_corrupt_counts_and_records_the_skipped_image(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env_isolated(monkeypatch, tmp_path)
    root, bad = _tree_with_corrupt(tmp_path)
    model = small("resnet18", size=32)
    summary = run_protocol(model, "appearance-lite", data=root, workers=1, progress=False, pretrained=False, skip_corrupt=True, batch_size=2)
    assert len(summary.records) == 4
    for rec in summary.records:
        assert rec["num_samples"] == 4 and rec["skipped_corrupt"] == 1
        assert any("ILSVRC2012_val_00000009" in f for f in rec["skipped_files"])


def test_stored_work_is_skipped_resumed_and_forced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env_isolated(monkeypatch, tmp_path)
    root = folder_tree(tmp_path / "val", [0, 1, 2, 0])
    model = small("resnet18", size=32)
    kw = dict(data=root, workers=0, progress=False, pretrained=False)
    first = run_protocol(model, "appearance-lite", shifts=["rgb+50"], **kw)
    assert (first.computed, first.reused) == (2, 0)  # the reference comes along for the drop
    store = ResultStore(tmp_path / "results")
    assert len(store.records("appearance-lite")) == 2
    # a later run of the whole protocol computes only what is missing, and reuses the stored origin
    second = run_protocol(model, "appearance-lite", **kw)
    assert (second.computed, second.reused) == (2, 2)
    by = {r["shift"]: r for r in second.records}
    assert by["std-x1.5"]["drop"]["top1_err"] == pytest.approx(by["std-x1.5"]["metrics"]["top1_err"] - by["origin"]["metrics"]["top1_err"])
    third = run_protocol(model, "appearance-lite", **kw)
    assert (third.computed, third.reused) == (0, 4)
    assert len(store.records("appearance-lite")) == 4
    forced = run_protocol(model, "appearance-lite", force=True, batch_size=3, **kw)
    assert forced.computed == 4
    # the key ignores execution details (batch size), so the forced results replace the same keys
    assert {r["key"] for r in forced.records} == {r["key"] for r in third.records}
    assert [r["metrics"] for r in forced.records] == [r["metrics"] for r in third.records]
    # precision is part of the identity
    bf = run_protocol(model, "appearance-lite", precision="bf16", shifts=["origin"], **kw)
    assert bf.computed == 1 and bf.records[0]["key"] not in {r["key"] for r in third.records}


def test_interrupt_writes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env_isolated(monkeypatch, tmp_path)
    root = folder_tree(tmp_path / "val", [0, 1, 2, 0])
    model = small("resnet18", size=32)
    calls = {"n": 0}
    orig = model.forward

    def boom(x):  # Ctrl-C in the middle of the pass
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return orig(x)

    model.forward = boom
    with pytest.raises(KeyboardInterrupt):
        run_protocol(model, "appearance-lite", data=root, workers=0, progress=False, pretrained=False, batch_size=2)
    assert not (tmp_path / "results").exists() or not ResultStore(tmp_path / "results").records()


def test_torchrun_two_ranks_give_the_single_process_records(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Launched under torchrun (2 CPU ranks, gloo), 5 images shard 3 + 2; the all-reduced counts make
    the records equal to a single process's, and only rank 0 writes them."""
    import json
    import os
    import subprocess
    import sys

    env_isolated(monkeypatch, tmp_path)
    root = folder_tree(tmp_path / "val", [0, 1, 2, 3, 1], size=(40, 30))
    common = ["-m", "dgbench", "run", "--model", "resnet18", "--protocol", "appearance-lite", "--data", str(root),
              "--no-pretrained", "--no-progress", "--workers", "0", "--batch-size", "2"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for name, launcher in (("one", []), ("two", ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"])):
        out = subprocess.run([sys.executable, *launcher, *common, "--results", str(tmp_path / name)], env=env,
                             capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stderr[-2000:]
    one, two = ([json.loads(line) for line in (tmp_path / n / "appearance-lite.jsonl").read_text().splitlines()] for n in ("one", "two"))
    assert len(two) == 4, "rank 0 alone writes"
    assert [r["world_size"] for r in two] == [2] * 4 and [r["world_size"] for r in one] == [1] * 4
    for a, b in zip(one, two):
        assert (a["key"], a["metrics"], a["drop"], a["num_samples"]) == (b["key"], b["metrics"], b["drop"], b["num_samples"])
    from dgbench.results import outcomes

    for a, b in zip(one, two):  # per-image outcomes merged over the two shards in sample order
        (oa, order_a), (ob, order_b) = (outcomes.read(tmp_path / n, "appearance-lite", a["key"]) for n in ("one", "two"))
        assert order_a == order_b and oa.evaluated.all() and (oa.pred == ob.pred).all()
        assert all((oa.correct[k] == ob.correct[k]).all() for k in (1, 5))

"""Precision is the runtime's: what a record (or a checkpoint) names is what its forwards ran in.

A probe (a global forward hook on every module) records the autocast dtype and the TF32 flags
that are active inside each forward pass; the record's precision must match them.
"""
from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from dgbench.errors import DgbenchError
from dgbench.protocols import RunRequest, run
from dgbench.runtime import PRECISIONS, Runtime


class Probe:
    """What every module's forward ran under: (autocast dtype or None, cudnn/matmul TF32 allowed)."""

    def __init__(self) -> None:
        self.seen: set[tuple[torch.dtype | None, bool]] = set()
        self.device = "cpu"  # whose autocast state is read

    def __call__(self, module: torch.nn.Module, args: object) -> None:
        on = torch.is_autocast_enabled(self.device)
        dtype = torch.get_autocast_dtype(self.device) if on else None
        tf32 = torch.backends.cudnn.allow_tf32 or torch.backends.cuda.matmul.allow_tf32
        self.seen.add((dtype, tf32))


@pytest.fixture
def probe() -> Iterator[Probe]:
    p = Probe()
    handle = torch.nn.modules.module.register_module_forward_pre_hook(p)
    before = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    # PyTorch's default allows TF32 in cuDNN convolutions: a path that never sets the precision
    # would run with it, so start from that default.
    torch.backends.cudnn.allow_tf32 = True
    try:
        yield p
    finally:
        handle.remove()
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before


@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
def test_segmentation_records_the_precision_its_forwards_ran(precision: str, probe: Probe) -> None:
    req = RunRequest(model="ibn_b", dataset="digit-scenes", device="cpu", precision=precision, limit=2, store=False,
                     progress=False)
    records = run("cross-domain", req).records
    assert len(records) == 4 and {r["precision"] for r in records} == {precision}
    assert probe.seen == {(PRECISIONS[precision], False)}  # that autocast dtype, and no TF32


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("precision", ["fp32", "tf32", "bf16", "fp16"])
def test_cuda_segmentation_and_training_run_the_precision_they_record(precision: str, probe: Probe,
                                                                     tmp_path: Path) -> None:
    from dgbench.train.segmentation import train_segmentation

    probe.device = "cuda"
    req = RunRequest(model="ibn_b", dataset="digit-scenes", device="cuda", precision=precision, limit=2, store=False,
                     progress=False)
    assert {r["precision"] for r in run("cross-domain", req).records} == {precision}
    assert probe.seen == {(PRECISIONS[precision], precision == "tf32")}
    probe.seen.clear()
    train_segmentation("digit-scenes", "ibn_a", out_dir=tmp_path, precision=precision, iterations=1, batch_size=4,
                       crop_size=(32, 32), device="cuda", num_workers=0, progress=False, pretrained_backbone=False)
    assert probe.seen == {(PRECISIONS[precision], precision == "tf32")}
    assert json.loads((tmp_path / "model.json").read_text())["config"]["precision"] == precision


def test_segmentation_training_runs_and_records_its_precision(tmp_path: Path, probe: Probe) -> None:
    from dgbench.train.segmentation import train_segmentation

    r = train_segmentation("digit-scenes", "ibn_a", out_dir=tmp_path, precision="bf16", iterations=1, batch_size=4,
                           crop_size=(32, 32), device="cpu", num_workers=0, progress=False, pretrained_backbone=False)
    assert r.iteration == 1 and probe.seen == {(torch.bfloat16, False)}
    assert json.loads((tmp_path / "model.json").read_text())["config"]["precision"] == "bf16"


def test_training_resumes_only_in_the_precision_it_started_in(tmp_path: Path) -> None:
    from dgbench.errors import CheckpointError
    from dgbench.train.segmentation import train_segmentation

    common = dict(out_dir=tmp_path, iterations=2, batch_size=4, crop_size=(32, 32), device="cpu", num_workers=0,
                  progress=False, pretrained_backbone=False)
    assert train_segmentation("digit-scenes", "ibn_a", stop_after=1, **common).iteration == 1
    with pytest.raises(CheckpointError, match="precision='fp32'"):
        train_segmentation("digit-scenes", "ibn_a", precision="bf16", **common)


def test_tf32_is_refused_off_cuda_in_one_line() -> None:
    req = RunRequest(model="ibn_b", dataset="digit-scenes", device="cpu", precision="tf32", store=False, progress=False)
    with pytest.raises(DgbenchError, match="--precision tf32: .* on cpu it would run as fp32") as err:
        run("cross-domain", req)
    assert "\n" not in str(err.value)


def test_a_runtime_passed_in_must_run_the_requested_precision() -> None:
    req = RunRequest(model="ibn_b", dataset="digit-scenes", device="cpu", precision="bf16", store=False, progress=False)
    with pytest.raises(DgbenchError, match="--precision bf16: the runtime passed in runs fp32"):
        run("cross-domain", req, Runtime(torch.device("cpu")))


def test_the_runtime_sets_tf32_flags_for_its_life_and_restores_them() -> None:
    before = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    try:
        torch.backends.cudnn.allow_tf32 = True
        with Runtime.start("cpu", "bf16") as rt:
            assert rt.precision == "bf16" and rt.amp_dtype == torch.bfloat16
            assert not torch.backends.cudnn.allow_tf32 and not torch.backends.cuda.matmul.allow_tf32
            with rt.autocast():
                assert torch.get_autocast_dtype("cpu") == torch.bfloat16 and torch.is_autocast_enabled("cpu")
            assert not rt.grad_scaler().is_enabled()
        assert torch.backends.cudnn.allow_tf32
        assert Runtime(torch.device("cpu"), precision="fp16").grad_scaler().is_enabled()
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before

"""`dgbench train --task segmentation`: the CLI reaches the paper-recipe trainer and resumes."""
from __future__ import annotations

import shutil
from pathlib import Path

import torch
from typer.testing import CliRunner

from dgbench.cli import app

ARGS = ["train", "--task", "segmentation", "--dataset", "digit-scenes", "--model", "ibn_a", "--epochs", "1",
        "--batch-size", "8", "--crop", "48", "--device", "cpu", "--workers", "0"]


def _train(out: Path, stop_after: int) -> str:
    res = CliRunner().invoke(app, [*ARGS, "--out", str(out), "--stop-after", str(stop_after)])
    assert res.exit_code == 0, res.output
    return res.output


def _ckpt(out: Path) -> dict:
    return torch.load(out / "checkpoint.pth", map_location="cpu", weights_only=False)


def test_segmentation_training_stops_and_resumes_from_the_cli(tmp_path: Path) -> None:
    whole, split, tampered = tmp_path / "whole", tmp_path / "split", tmp_path / "tampered"
    _train(whole, 3)  # uninterrupted: iterations 0, 1, 2

    assert "stopped at iteration 2" in _train(split, 2)
    assert (split / "checkpoint.pth").is_file() and not (split / "model.pth").exists()
    assert _ckpt(split)["iteration"] == 2
    shutil.copytree(split, tampered)
    assert "stopped at iteration 3" in _train(split, 3)

    # Resumed exactly: the same weights and optimizer state as the uninterrupted run, bit for bit
    # (the restored model, momentum buffers, RNG and sampler offset all count).
    a, b = _ckpt(whole), _ckpt(split)
    assert b["iteration"] == a["iteration"] == 3
    assert a["model"].keys() == b["model"].keys()
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"]), "resume is not exact"
    for sa, sb in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values()):
        assert torch.equal(sa["momentum_buffer"], sb["momentum_buffer"])

    # ... and it read the checkpoint rather than starting again (which would give the same bits):
    # from a checkpoint whose weights were changed, the third iteration ends elsewhere.
    ck = _ckpt(tampered)
    name = next(k for k, v in ck["model"].items() if v.is_floating_point() and v.dim() == 4)
    ck["model"][name] = ck["model"][name] * 2
    torch.save(ck, tampered / "checkpoint.pth")
    _train(tampered, 3)
    c = _ckpt(tampered)
    assert c["iteration"] == 3
    assert not torch.equal(c["model"][name], a["model"][name])
def test_unknown_task_is_refused_with_a_suggestion() -> None:
    result = CliRunner().invoke(app, ["train", "--task", "segm"])
    assert result.exit_code != 0
    assert "segmentation" in str(result.exception) or "segmentation" in result.output

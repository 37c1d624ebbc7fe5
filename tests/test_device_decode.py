"""``--decode gpu``: decode + resize + crop on the device, tested on the CPU (libjpeg instead of nvJPEG).

Bounds measured on scikit-image's bundled photos (README, "ImageNet scale on one GPU"): on the CPU
the device path differs from PIL's by at most 1 grey level (mean about 0.14): only the resize
rounding differs, the decode is the same libjpeg.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from appearance_fixtures import env_isolated, folder_tree, small, write_jpeg
from dgbench.data.base import Preprocess
from dgbench.data.device_decode import DECODE_INFO, DeviceDecoder, read_encoded
from dgbench.data.imagenet import ImageNetVal, decode_crop, synsets
from dgbench.engine import EngineConfig, evaluate
from dgbench.errors import CorruptImageError, DgbenchError
from dgbench.protocols.appearance import run_protocol
from dgbench.shifts import ShiftSpec

PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "camera", "hubble_deep_field")
MAX_DIFF_CPU, MEAN_DIFF_CPU = 1, 0.25


def _photos(tmp_path: Path) -> list[Path]:
    data = pytest.importorskip("skimage.data")
    paths = []
    for name in PHOTOS:
        arr = getattr(data, name)()
        path = tmp_path / f"{name}.JPEG"
        Image.fromarray(arr).save(path, quality=90)
        paths.append(path)
    # portrait orientation too (the shorter side is the width)
    arr = np.ascontiguousarray(data.coffee().transpose(1, 0, 2))
    Image.fromarray(arr).save(tmp_path / "portrait.JPEG", quality=90)
    return paths + [tmp_path / "portrait.JPEG"]


def test_crops_are_within_the_documented_bounds_of_pil_on_photos(tmp_path: Path) -> None:
    paths = _photos(tmp_path)
    pre = Preprocess()
    crops, ok, errors = DeviceDecoder(pre)([read_encoded(p) for p in paths], torch.device("cpu"))
    assert ok == list(range(len(paths))) and not errors
    assert crops.shape == (len(paths), 3, 224, 224) and crops.dtype == torch.uint8
    means = []
    for path, crop in zip(paths, crops):
        diff = (crop.int() - decode_crop(path, pre).int()).abs()
        assert diff.max().item() <= MAX_DIFF_CPU, path.name
        means.append(diff.float().mean().item())
    assert np.mean(means) <= MEAN_DIFF_CPU
    assert max(means) > 0  # the paths are really different code (not the PIL path again)


def test_png_and_corrupt_files(tmp_path: Path) -> None:
    png = tmp_path / "a.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (300, 280, 3), dtype=np.uint8)).save(png)
    assert read_encoded(png).kind == "pixels"
    good = tmp_path / "g.JPEG"
    write_jpeg(good, 1, size=(300, 260))
    bad = tmp_path / "bad.JPEG"
    bad.write_bytes(good.read_bytes()[:300])  # a truncated JPEG: the magic bytes are there
    crops, ok, errors = DeviceDecoder(Preprocess())([read_encoded(p) for p in (png, bad, good)], torch.device("cpu"))
    assert ok == [0, 2] and crops.shape[0] == 2 and len(errors) == 1 and "bad.JPEG" in errors[0]
    assert torch.equal(crops[0], DeviceDecoder(Preprocess())._resize_crop(read_encoded(png).data[None])[0])
    with pytest.raises(CorruptImageError, match="junk.JPEG"):
        (tmp_path / "junk.JPEG").write_bytes(b"not an image")
        read_encoded(tmp_path / "junk.JPEG")


def test_engine_gpu_decode_on_cpu_counts_every_image_and_skips_corrupt(tmp_path: Path) -> None:
    root = folder_tree(tmp_path / "val", [0, 1, 2, 3, 0, 1, 2, 3, 0, 1], size=(90, 70))
    model = small("resnet18_ibn_a", num_classes=1000)
    pre = Preprocess.from_cfg(model.pretrained_cfg)
    shifts = [ShiftSpec("origin", "origin"), ShiftSpec("rgb+50", "add", {"value": 50, "channels": "rgb"})]
    cfg = dict(device="cpu", batch_size=4, workers=0, progress=False)
    exact = evaluate(model, ImageNetVal(root, pre), shifts, config=EngineConfig(**cfg))
    # one worker process: the files' bytes travel from it to the main process
    fast = evaluate(model, ImageNetVal(root, pre, decode="gpu"), shifts,
                    config=EngineConfig(decode="gpu", **{**cfg, "workers": 1}))
    assert fast.num_samples == exact.num_samples == 10
    for s in shifts:
        assert fast.counts[s.name].n == 10
    bad = root / synsets()[3] / "ILSVRC2012_val_00000011.JPEG"
    bad.write_bytes(b"\xff\xd8 truncated")
    with pytest.raises(CorruptImageError, match="ILSVRC2012_val_00000011"):
        evaluate(model, ImageNetVal(root, pre, decode="gpu"), shifts, config=EngineConfig(decode="gpu", **cfg))
    res = evaluate(model, ImageNetVal(root, pre, decode="gpu"), shifts,
                   config=EngineConfig(decode="gpu", skip_corrupt=True, **cfg))
    assert res.num_samples == 10 and res.skipped_corrupt == 1 and "ILSVRC2012_val_00000011" in res.skipped_files[0]


def test_decode_path_is_recorded_and_changes_the_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env_isolated(monkeypatch, tmp_path)
    root = folder_tree(tmp_path / "val", [0, 1, 2, 3], size=(90, 70))
    kw = dict(shifts=["origin"], data=root, workers=0, progress=False, pretrained=False, device="cpu", store=False)
    exact = run_protocol("resnet18", "appearance-lite", **kw).records[0]
    fast = run_protocol("resnet18", "appearance-lite", options={"decode": "gpu"}, limit=3, **kw).records[0]
    assert fast["preprocessing"]["decode"] == DECODE_INFO != exact["preprocessing"]["decode"]
    assert fast["key"] != exact["key"] and fast["num_samples"] == 3
    with pytest.raises(DgbenchError, match="--decode gpu"):
        run_protocol("resnet18", "appearance-lite", dataset="digits", shifts=["origin"], options={"decode": "gpu"},
                     limit=4, workers=0, progress=False, store=False)


def test_cli_decode_flag_is_recorded_and_other_kinds_refuse_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    from typer.testing import CliRunner

    from dgbench.cli import app

    env_isolated(monkeypatch, tmp_path)
    root = folder_tree(tmp_path / "val", [0, 1, 2], size=(90, 70))
    args = ["run", "--model", "resnet18", "--protocol", "appearance-lite", "--shifts", "origin", "--data", str(root),
            "--no-pretrained", "--workers", "0", "--limit", "2", "--device", "cpu", "--format", "json"]
    runner = CliRunner()
    res = runner.invoke(app, args + ["--decode", "gpu"])
    assert res.exit_code == 0, res.output
    recs = [json.loads(line) for line in res.stdout.splitlines() if line.startswith("{")]
    assert recs[0]["preprocessing"]["decode"] == DECODE_INFO
    res = runner.invoke(app, ["run", "--protocol", "cross-domain", "--dataset", "digits", "--decode", "gpu"])
    assert isinstance(res.exception, DgbenchError) and "--decode: not used by the cross-domain" in str(res.exception)

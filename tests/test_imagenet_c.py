"""--data-c: the published ImageNet-C tree as the source of the corruption shifts (a generated tiny tree)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from corruption_fixtures import corruption_shifts
from dgbench.data import imagenet_c
from dgbench.data.base import Preprocess
from dgbench.data.imagenet import ImageNetVal
from dgbench.errors import DatasetNotFoundError

WNIDS = ("n01440764", "n01443537")


def _jpeg(path: Path, size: tuple[int, int], seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(arr).save(path, quality=85)


def _trees(tmp: Path) -> tuple[Path, Path]:
    val, c = tmp / "val", tmp / "imagenet-c"
    k = 0
    for w in WNIDS:
        for j in range(2):
            name = f"ILSVRC2012_val_{k + 1:08d}.JPEG"
            _jpeg(val / w / name, (300, 260), k)
            for sev in (1, 3):
                _jpeg(c / "gaussian_noise" / str(sev) / w / name, (224, 224), 100 * sev + k)
            k += 1
    (c / "fog" / "2").mkdir(parents=True)
    return val, c


def test_the_tree_is_read_for_every_selected_image_and_named_in_the_record(tmp_path: Path) -> None:
    val, root = _trees(tmp_path)
    assert imagenet_c.layout(root) == {"fog": [2], "gaussian_noise": [1, 3]}
    ds = ImageNetVal(val, Preprocess(256, 224, "bilinear"))
    spec = corruption_shifts()["gaussian_noise-3"]
    run, source = imagenet_c.source_for(spec, ds, root)
    assert run.params["images"].startswith("published ImageNet-C") and len(run.params["files_sha256"]) == 16
    assert run.params["corruption"] == "gaussian_noise" and run != spec  # another record key than a rendering
    for i in range(len(ds)):
        path, label = ds.samples[i]
        expected = root / "gaussian_noise" / "3" / WNIDS[label] / path.name
        with Image.open(expected) as im:
            want = torch.from_numpy(np.asarray(im.convert("RGB")).copy()).permute(2, 0, 1)
        got = source(ds, i, ds[i][0])
        assert got.dtype == torch.uint8 and torch.equal(got, want)
    sub = imagenet_c.ImageNetCSource(source.paths)
    assert sub(ds, 1, torch.zeros(3, 200, 200, dtype=torch.uint8)).shape == (3, 200, 200)  # center crop, no resize
    with pytest.raises(DatasetNotFoundError, match="smaller than the model's 256x256"):
        sub(ds, 0, torch.zeros(3, 256, 256, dtype=torch.uint8))


def test_missing_folders_and_files_are_named(tmp_path: Path) -> None:
    val, root = _trees(tmp_path)
    ds = ImageNetVal(val, Preprocess(256, 224, "bilinear"))
    with pytest.raises(DatasetNotFoundError, match=r"no gaussian_noise/5/ folder \(found: fog \[2\], gaussian_noise \[1, 3\]\)"):
        imagenet_c.source_for(corruption_shifts()["gaussian_noise-5"], ds, root)
    (root / "gaussian_noise" / "1" / WNIDS[1] / "ILSVRC2012_val_00000004.JPEG").unlink()
    with pytest.raises(DatasetNotFoundError, match=r"1 of 4 selected images have no file there \(first: n01443537/ILSVRC2012_val_00000004.JPEG\)"):
        imagenet_c.source_for(corruption_shifts()["gaussian_noise-1"], ds, root)
    with pytest.raises(DatasetNotFoundError, match="not a folder"):
        imagenet_c.layout(tmp_path / "nope")


def test_the_corruption_protocol_reads_the_tree_with_the_data_c_option(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from appearance_fixtures import env_isolated, small
    from dgbench.protocols import RunRequest, run

    env_isolated(monkeypatch, tmp_path)
    val, root = _trees(tmp_path)
    req = dict(model=small("resnet18", size=64), data=str(val), shifts=["gaussian_noise-3"], workers=0, progress=False, store=False)
    read = run("corruptions-lite", RunRequest(**req, options={"data_c": str(root)}))
    assert not list((tmp_path / "cache").rglob("*.png"))  # read from the tree: nothing rendered
    rendered = run("corruptions-lite", RunRequest(**req))
    assert len(list((tmp_path / "cache").rglob("*.png"))) == 4
    spec_read, spec_rendered = read.records[1]["shift_spec"]["params"], rendered.records[1]["shift_spec"]["params"]
    assert spec_read["images"].startswith("published ImageNet-C") and "library_version" not in spec_read
    assert spec_rendered["library_version"] and "images" not in spec_rendered
    assert read.records[1]["key"] != rendered.records[1]["key"]

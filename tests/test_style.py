"""CycleGAN generator in the authors' key layout, legacy checkpoints, and the Monet cache."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from appearance_fixtures import env_isolated, folder_tree, small
from dgbench.data.base import Preprocess
from dgbench.data.imagenet import ImageNetVal
from dgbench.errors import CheckpointError, DgbenchError
from dgbench.models import create_model
from dgbench.models.style import ResnetGenerator, load_style_generator, stylize_batch
from dgbench.protocols import get_shift
from dgbench.protocols import style_cache
from dgbench.protocols.appearance import run_protocol


def authors_keys(n_blocks: int = 9) -> list[str]:
    """The parameter names of the authors' resnet_9blocks generator, written out from its layout."""
    keys = []
    for i in (1, 4, 7):
        keys += [f"model.{i}.weight", f"model.{i}.bias"]
    for b in range(10, 10 + n_blocks):
        for j in (1, 5):
            keys += [f"model.{b}.conv_block.{j}.weight", f"model.{b}.conv_block.{j}.bias"]
    up = 10 + n_blocks
    for i in (up, up + 3, up + 7):
        keys += [f"model.{i}.weight", f"model.{i}.bias"]
    return keys


def test_real_architecture_has_the_authors_keys_and_shapes() -> None:
    sd = ResnetGenerator().state_dict()
    assert list(sd) == authors_keys(9)
    assert sd["model.1.weight"].shape == (64, 3, 7, 7)
    assert sd["model.10.conv_block.1.weight"].shape == (256, 256, 3, 3)
    assert sd["model.19.weight"].shape == (256, 128, 3, 3)  # ConvTranspose2d(256 -> 128)
    assert sd["model.26.weight"].shape == (3, 64, 7, 7)
    assert sum(v.numel() for v in sd.values()) == 11_378_179  # the published resnet_9blocks size


def _with_legacy_stats(sd: dict[str, torch.Tensor], n_blocks: int) -> dict[str, torch.Tensor]:
    """What a PyTorch < 0.4 save of the same generator holds: IN running stats at every norm."""
    sd = dict(sd)
    norms = [2, 5, 8] + [f"{b}.conv_block.{j}" for b in range(10, 10 + n_blocks) for j in (2, 6)] + [11 + n_blocks, 14 + n_blocks]
    for n in norms:
        ch = 8
        sd[f"model.{n}.running_mean"] = torch.zeros(ch)
        sd[f"model.{n}.running_var"] = torch.ones(ch)
        sd[f"model.{n}.num_batches_tracked"] = torch.tensor(0)
    return sd


@pytest.mark.parametrize("legacy", [False, True])
def test_full_size_random_generator_saved_in_authors_layout_loads_and_runs(tmp_path: Path, legacy: bool) -> None:
    torch.manual_seed(0)
    # the full 64-filter generator once; the legacy variant with 8 filters (same 9-block key layout)
    gen = ResnetGenerator(ngf=8 if legacy else 64)
    sd = gen.state_dict()
    if legacy:
        sd = _with_legacy_stats(sd, 9)
    path = tmp_path / "latest_net_G.pth"
    torch.save(sd, path)
    loaded = load_style_generator(path)
    assert (loaded.ngf, loaded.n_blocks) == (8 if legacy else 64, 9)
    assert len(loaded.sha256) == 64
    x = torch.rand(1, 3, 16, 20) * 2 - 1
    y = loaded(x)
    assert y.shape == x.shape and y.abs().max() <= 1
    torch.testing.assert_close(y, gen.eval()(x))


def test_generator_load_errors(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="not found"):
        load_style_generator(tmp_path / "missing.pth")
    bad = tmp_path / "bad.pth"
    torch.save({"conv.weight": torch.zeros(1)}, bad)
    with pytest.raises(CheckpointError, match="model.1.weight"):
        load_style_generator(bad)
    classifier = tmp_path / "classifier.pth"  # a zoo classifier passed as the generator: the file and what it is
    torch.save(create_model("resnet18_ibn_a", num_classes=10).state_dict(), classifier)
    with pytest.raises(CheckpointError, match=rf"^{re.escape(str(classifier))}: not a CycleGAN ResnetGenerator .*"
                                              r"its keys suggest a ResNet with IN in the blocks' BNs \(IBN-a style\), 10 classes$"):
        load_style_generator(classifier)


def test_stylize_batch_keeps_size_even_when_not_divisible_by_4() -> None:
    gen = ResnetGenerator(ngf=4, n_blocks=1).eval()
    u = torch.randint(0, 256, (2, 3, 30, 26), dtype=torch.uint8)
    out = stylize_batch(gen, u)
    assert out.shape == u.shape and out.dtype == torch.uint8


def _tiny_generator(path: Path, seed: int) -> Path:
    torch.manual_seed(seed)
    torch.save(ResnetGenerator(ngf=4, n_blocks=2).state_dict(), path)
    return path


def test_monet_cache_is_reused_and_rebuilt_when_the_generator_changes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env_isolated(monkeypatch, tmp_path)
    root = folder_tree(tmp_path / "val", [0, 1, 2, 1])
    prep = Preprocess(resize_size=40, crop_size=32)
    ds = ImageNetVal(root, prep)
    spec = get_shift("monet")
    g1 = _tiny_generator(tmp_path / "g1.pth", 1)
    rep = style_cache.prepare(spec, ds, prep, weights=g1, workers=0, progress=False)
    assert (rep.rendered, rep.reused, rep.total) == (4, 0, 4)
    pngs = sorted(rep.folder.glob("*.png"))
    assert [p.stem for p in pngs] == [f"ILSVRC2012_val_{i:08d}" for i in range(1, 5)]
    first = {p.name: p.read_bytes() for p in pngs}
    again = style_cache.prepare(spec, ds, prep, weights=g1, workers=0, progress=False)
    assert (again.rendered, again.reused, again.folder) == (0, 4, rep.folder)
    # resumable: a lost file is re-rendered, identically
    pngs[1].unlink()
    resumed = style_cache.prepare(spec, ds, prep, weights=g1, workers=0, progress=False)
    assert resumed.rendered == 1 and pngs[1].read_bytes() == first[pngs[1].name]
    # another generator renders into another folder
    g2 = _tiny_generator(tmp_path / "g2.pth", 2)
    other = style_cache.prepare(spec, ds, prep, weights=g2, workers=0, progress=False)
    assert other.rendered == 4 and other.folder != rep.folder
    assert other.generator_sha256 != rep.generator_sha256
    assert any(p.read_bytes() != first[p.name] for p in other.folder.glob("*.png"))
    # the cached rendering is what the generator makes of the crop
    crop = ds[0][0]
    gen = load_style_generator(g2)
    cached = style_cache.read_png(other.folder / "ILSVRC2012_val_00000001.png").int()
    # rendered in a batch of 4 there, alone here: float rounding may move a pixel by one level
    assert (cached - stylize_batch(gen, crop[None])[0].int()).abs().max() <= 1


def test_run_reads_the_cache_and_says_how_to_build_it_when_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env_isolated(monkeypatch, tmp_path)
    root = folder_tree(tmp_path / "val", [0, 1, 2, 1])
    model = small("resnet18_ibn_b", size=32)
    with pytest.raises(DgbenchError, match="dgbench prepare monet --data"):
        run_protocol(model, "appearance", data=root, workers=0, progress=False, pretrained=False)
    prep = Preprocess.from_cfg(model.pretrained_cfg)
    g1 = _tiny_generator(tmp_path / "g1.pth", 1)
    rep = style_cache.prepare(get_shift("monet"), ImageNetVal(root, prep), prep, weights=g1, workers=0, progress=False)
    summary = run_protocol(model, "appearance", data=root, workers=1, progress=False, pretrained=False)
    by = {r["shift"]: r for r in summary.records}
    assert list(by) == ["origin", "rgb+50", "r+50", "std-x1.5", "monet"]
    assert by["monet"]["shift_spec"]["params"]["generator_sha256"] == rep.generator_sha256
    assert by["monet"]["num_samples"] == 4
    # a new generator's cache is another shift spec: a new result, not a stale reuse
    g2 = _tiny_generator(tmp_path / "g2.pth", 2)
    style_cache.prepare(get_shift("monet"), ImageNetVal(root, prep), prep, weights=g2, workers=0, progress=False)
    again = run_protocol(model, "appearance", data=root, workers=0, progress=False, pretrained=False)
    assert again.computed == 1 and again.reused == 4


def test_cv_stylize_is_rendered_once_into_the_cache_and_equals_the_filter(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil

    from dgbench.shifts import render_image_shift

    env_isolated(monkeypatch, tmp_path)
    root = folder_tree(tmp_path / "val", [0, 1, 2])
    model = small("resnet18", size=32)
    first = run_protocol(model, "appearance-offline", shifts=["cv-stylize"], data=root, workers=0, progress=False, pretrained=False, store=False)
    prep = Preprocess.from_cfg(model.pretrained_cfg)
    ds = ImageNetVal(root, prep)
    rep = style_cache.prepare(get_shift("cv-stylize"), ds, prep, workers=0, progress=False)
    assert (rep.rendered, rep.reused) == (0, 3)  # the run already rendered every image
    for i in range(len(ds)):  # lossless: the cached PNG is exactly the filter's output
        cached = style_cache.read_png(style_cache.png_path(rep.folder, style_cache.sample_id(ds, i)))
        assert torch.equal(cached, render_image_shift(get_shift("cv-stylize"), ds[i][0]))
    shutil.rmtree(rep.folder)
    again = run_protocol(model, "appearance-offline", shifts=["cv-stylize"], data=root, workers=0, progress=False, pretrained=False, store=False)
    assert [r["metrics"] for r in first.records] == [r["metrics"] for r in again.records]


def test_cli_prepare_monet_then_doctor_reports_the_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from dgbench.cli import app

    env_isolated(monkeypatch, tmp_path)
    root = folder_tree(tmp_path / "val", [0, 1, 2])
    g = _tiny_generator(tmp_path / "latest_net_G.pth", 3)
    runner = CliRunner()
    args = ["prepare", "monet", "--data", str(root), "--weights", str(g), "--resize", "40", "--crop", "32", "--workers", "0", "--no-progress"]
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    assert "3 rendered" in first.output and "0 already cached" in first.output
    second = runner.invoke(app, args)
    assert "0 rendered" in second.output and "3 already cached" in second.output
    missing = runner.invoke(app, ["prepare", "monet", "--data", str(root)])
    assert missing.exit_code != 0 and "--weights" in str(missing.exception or missing.output)
    doc = runner.invoke(app, ["doctor", "--data", str(root), "--format", "json"])
    assert doc.exit_code == 0, doc.output
    import json

    rows = {r["what"]: r for r in json.loads(doc.stdout)}
    assert rows["imagenet"]["status"] == "partial" and "layout folders: 3 images" in rows["imagenet"]["details"]
    assert rows["style cache monet"]["status"] == "ok" and "3 of 3 images" in rows["style cache monet"]["details"]

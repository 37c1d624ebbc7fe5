"""Checkpoint loading: published-weights table, download through torch hub's cache (a server on
127.0.0.1 serving checkpoints the tests make), hash checks, offline errors, strict loading."""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import http.server
import re
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from torch import nn

from dgbench.errors import CheckpointError
from dgbench.models import PretrainedCfg, create_model, list_models, model_info
from dgbench.models import pretrained as P
from dgbench.models import weights as W
from dgbench.models.resnet import BasicBlock, ResNet


def tiny(num_classes: int = 10) -> ResNet:
    """A ResNet-IBN-a small enough that checkpoints are a few kB."""
    return ResNet(BasicBlock, [1, 1], num_classes=num_classes, widths=(8, 16), variant="ibn_a", stem="cifar")


def tiny_info(cfg: PretrainedCfg) -> PretrainedCfg:
    """The weights record of the tiny network (what the loader reads)."""
    return dataclasses.replace(cfg, architecture="tiny")


def save(model: nn.Module, path: Path) -> str:
    torch.save(model.state_dict(), path)
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty torch hub directory for this test (and the network allowed)."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv("DGBENCH_OFFLINE", raising=False)
    return tmp_path / "torch" / "hub" / "checkpoints"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """An HTTP server on 127.0.0.1 serving a fresh directory: (base URL, directory)."""
    root = tmp_path / "served"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a, **k: None  # type: ignore[method-assign]
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", root
    finally:
        httpd.shutdown()
        httpd.server_close()


# -- the published table --------------------------------------------------------------------------

def test_published_table_is_consistent_with_the_registry() -> None:
    registered = set(list_models())
    for name, released in P.RELEASED.items():
        assert name in registered
        info = model_info(name)
        assert info.pretrained_cfg == info.weights[0] and info.tags == tuple(w.tag for w in released)
        for table, cfg in zip(released, info.weights):
            assert cfg.url == table.url and cfg.has_weights and cfg.source and cfg.license
            assert cfg.architecture == name and cfg.tag in ("authors", "tv_in1k", "tv2_in1k")
            assert re.fullmatch(r"[0-9a-f]{8}", cfg.sha256_prefix or "")
            assert cfg.url.endswith(f"-{cfg.sha256_prefix}.pth") and cfg.file_name == cfg.url.rsplit("/", 1)[-1]
            assert cfg.input_size == (3, 224, 224) and cfg.interpolation == "bilinear"
            assert cfg.resize_size == (232 if cfg.tag == "tv2_in1k" else 256)
    # Every checkpoint of the authors' release is in the table.
    authors = {n for n, ws in P.RELEASED.items() if any("XingangPan" in (w.url or "") for w in ws)}
    assert authors == {
        "resnet18_ibn_a", "resnet34_ibn_a", "resnet50_ibn_a", "resnet101_ibn_a",
        "resnet18_ibn_b", "resnet34_ibn_b", "resnet50_ibn_b", "resnet101_ibn_b",
        "resnext101_ibn_a", "se_resnet101_ibn_a", "densenet121_ibn_a", "densenet169_ibn_a",
    }
    assert not model_info("resnet50_ibn_c").pretrained_cfg.has_weights and model_info("resnet50_ibn_c").tags == ()


# -- local files ----------------------------------------------------------------------------------

def test_round_trip_through_a_local_file(tmp_path: Path) -> None:
    src = tiny()
    with torch.no_grad():
        for p in src.parameters():
            p.normal_()
    digest = save(src, tmp_path / "ckpt.pth")
    dst = tiny()
    assert W.load_pretrained(dst, tiny_info(PretrainedCfg()), tmp_path / "ckpt.pth") == digest
    for (k, a), b in zip(src.state_dict().items(), dst.state_dict().values()):
        assert torch.equal(a, b), k


def test_create_model_with_a_path_records_the_sha256(tmp_path: Path) -> None:
    src = create_model("resnet18_ibn_b", num_classes=3)
    digest = save(src, tmp_path / "r18b.pth")
    model = create_model("resnet18_ibn_b", num_classes=3, pretrained=str(tmp_path / "r18b.pth"))
    assert model.weights_sha256 == digest
    assert torch.equal(model.fc.weight, src.fc.weight)


def test_wrapped_and_data_parallel_checkpoints_load(tmp_path: Path) -> None:
    src = tiny()
    torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in src.state_dict().items()}}, tmp_path / "c.pth")
    dst = tiny()
    W.load_pretrained(dst, tiny_info(PretrainedCfg()), tmp_path / "c.pth")
    assert torch.equal(dst.conv1.weight, src.conv1.weight)


def test_strict_errors_list_missing_unexpected_and_mis_shaped_keys(tmp_path: Path) -> None:
    sd = tiny().state_dict()
    del sd["layer1.0.bn1.IN.weight"]
    sd["layer1.0.bn1.extra"] = torch.zeros(3)
    sd["conv1.weight"] = torch.zeros(8, 3, 5, 5)
    torch.save(sd, tmp_path / "bad.pth")
    with pytest.raises(CheckpointError) as exc:
        W.load_pretrained(tiny(), tiny_info(PretrainedCfg()), tmp_path / "bad.pth")
    msg = str(exc.value)
    assert "missing keys (1): layer1.0.bn1.IN.weight" in msg
    assert "unexpected keys (1): layer1.0.bn1.extra" in msg
    assert "conv1.weight: checkpoint (8, 3, 5, 5) vs model (8, 3, 3, 3)" in msg
    assert "\n" not in msg  # one line, however many keys


def test_a_wrong_file_is_one_line_naming_the_first_keys_and_what_it_holds(tmp_path: Path) -> None:
    """A DenseNet checkpoint passed for a ResNet: the first few keys of each kind, their counts, and
    what the file looks like (torch's message would list all 1000+ keys on their own lines)."""
    torch.save(create_model("densenet121_ibn_a", num_classes=7).state_dict(), tmp_path / "dense.pth")
    with pytest.raises(CheckpointError) as exc:
        W.load_pretrained(tiny(), tiny_info(PretrainedCfg()), tmp_path / "dense.pth")
    msg = str(exc.value)
    assert "\n" not in msg and len(msg) < 1500, msg
    # One key per module first, so the five named show five modules, not one module's five tensors.
    assert "missing keys (36): bn1.weight, conv1.weight, fc.weight, layer1.0.bn1.BN.weight, layer1.0.bn1.IN.weight" \
           " ... and 31 more" in msg, msg
    assert "unexpected keys (755): classifier.weight, features.conv0.weight," in msg
    assert "tensors under features (" in msg and "classifier (2)" in msg
    assert "suggest a DenseNet with IN in the blocks' BNs (IBN-a style), 7 classes" in msg


@pytest.mark.parametrize(("name", "kwargs", "guess"), [
    ("resnet18_ibn_b", {"num_classes": 5}, "a ResNet with IN after blocks (IBN-b style), 5 classes"),
    ("resnet18_ibn_d", {}, "a ResNet with IN in the stem and after blocks (IBN-b style), 1000 classes"),
    ("se_resnet50", {"num_classes": 3}, "an SE-ResNet without IN (no IBN), 3 classes"),
    ("deeplab_small_resnet_ibn_a", {}, "a DeepLab over a ResNet with IN in the blocks' BNs (IBN-a style), 11 classes"),
])
def test_what_a_checkpoint_looks_like(name: str, kwargs: dict, guess: str) -> None:
    from dgbench.models.state_fit import describe_state_dict

    with torch.device("meta"):  # shapes only: nothing is allocated
        sd = create_model(name, **kwargs).state_dict()
    assert describe_state_dict(sd).endswith("its keys suggest " + guess)
    assert describe_state_dict({"x": torch.zeros(1)}) == "1 tensors under x (1)"


def test_a_plain_resnet_checkpoint_does_not_load_into_ibn_a(tmp_path: Path) -> None:
    plain = ResNet(BasicBlock, [1, 1], num_classes=10, widths=(8, 16), stem="cifar")
    torch.save(plain.state_dict(), tmp_path / "plain.pth")
    with pytest.raises(CheckpointError, match=r"missing keys .*bn1\.IN\.weight"):
        W.load_pretrained(tiny(), tiny_info(PretrainedCfg()), tmp_path / "plain.pth")


def test_checkpoints_without_num_batches_tracked_load(tmp_path: Path) -> None:
    """Files saved before PyTorch 0.4.1 lack it; torch's BatchNorm fills it in."""
    src = tiny()
    torch.save({k: v for k, v in src.state_dict().items() if not k.endswith("num_batches_tracked")}, tmp_path / "o.pth")
    dst = tiny()
    W.load_pretrained(dst, tiny_info(PretrainedCfg()), tmp_path / "o.pth")
    assert torch.equal(dst.layer1[0].bn1.BN.running_var, src.layer1[0].bn1.BN.running_var)


def test_other_num_classes_skips_only_the_classifier(tmp_path: Path) -> None:
    src = tiny(num_classes=10)
    save(src, tmp_path / "c.pth")
    dst = tiny(num_classes=4)
    W.load_pretrained(dst, tiny_info(PretrainedCfg()), tmp_path / "c.pth")
    assert dst.skipped_keys == ["fc.weight", "fc.bias"]
    assert torch.equal(dst.layer2[0].conv1.weight, src.layer2[0].conv1.weight)


def test_weights_only_refuses_pickled_code(tmp_path: Path) -> None:
    torch.save({"conv1.weight": torch.zeros(1), "hook": functools.partial(print, "x")}, tmp_path / "evil.pth")
    with pytest.raises(CheckpointError, match="weights_only"):
        W.load_pretrained(tiny(), tiny_info(PretrainedCfg()), tmp_path / "evil.pth")


def test_missing_file_and_no_published_weights_are_clear(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="does not exist"):
        create_model("resnet18", pretrained=tmp_path / "nope.pth")
    with pytest.raises(CheckpointError, match="no published weights"):
        create_model("resnet18_ibn_c", pretrained=True)


def test_shipped_file_is_hash_checked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    digest = save(tiny(), tmp_path / "tiny.pth")
    monkeypatch.setattr(W, "asset_path", lambda *parts: tmp_path.joinpath(*parts))
    good = PretrainedCfg(file="tiny.pth", sha256_prefix=digest[:8])
    assert W.load_pretrained(tiny(), tiny_info(good), True) == digest
    bad = PretrainedCfg(file="tiny.pth", sha256_prefix="00000000" if digest[:8] != "00000000" else "11111111")
    with pytest.raises(CheckpointError, match="expected a hash starting with"):
        W.load_pretrained(tiny(), tiny_info(bad), True)


# -- download through torch hub's cache -----------------------------------------------------------

def test_download_verifies_the_hash_and_caches(hub: Path, server: tuple[str, Path]) -> None:
    base, root = server
    src = tiny()
    digest = save(src, root / "tmp.pth")
    name = f"tiny-{digest[:8]}.pth"
    (root / "tmp.pth").rename(root / name)
    cfg = PretrainedCfg(url=f"{base}/{name}", sha256_prefix=digest[:8])
    dst = tiny()
    assert W.load_pretrained(dst, tiny_info(cfg), True) == digest
    assert (hub / name).is_file()
    assert torch.equal(dst.conv1.weight, src.conv1.weight)
    # Second time from the cache: the server is not needed.
    (root / name).unlink()
    assert W.load_pretrained(tiny(), tiny_info(cfg), True) == digest


def test_download_with_a_wrong_hash_is_refused(hub: Path, server: tuple[str, Path]) -> None:
    base, root = server
    digest = save(tiny(), root / "x.pth")
    wrong = "0123abcd" if not digest.startswith("0123abcd") else "fedc3210"
    (root / "x.pth").rename(root / f"tiny-{wrong}.pth")
    cfg = PretrainedCfg(url=f"{base}/tiny-{wrong}.pth", sha256_prefix=wrong)
    with pytest.raises(CheckpointError, match="refused"):
        W.load_pretrained(tiny(), tiny_info(cfg), True)
    assert not (hub / f"tiny-{wrong}.pth").exists()


def test_a_corrupt_cached_file_is_refused(hub: Path) -> None:
    hub.mkdir(parents=True)
    save(tiny(), hub / "tiny-00aa11bb.pth")
    cfg = PretrainedCfg(url="http://127.0.0.1:9/tiny-00aa11bb.pth", sha256_prefix="00aa11bb")
    with pytest.raises(CheckpointError, match="expected a hash starting with '00aa11bb'"):
        W.load_pretrained(tiny(), tiny_info(cfg), True)


def test_file_url_as_pretrained(hub: Path, tmp_path: Path) -> None:
    digest = save(tiny(), tmp_path / "x.pth")
    path = tmp_path / f"tiny-{digest[:8]}.pth"
    (tmp_path / "x.pth").rename(path)
    assert W.load_pretrained(tiny(), tiny_info(PretrainedCfg()), path.as_uri()) == digest
    assert (hub / path.name).is_file()


def test_offline_names_the_url_and_the_cache_path(hub: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DGBENCH_OFFLINE", "1")
    with pytest.raises(CheckpointError) as exc:
        create_model("resnet50_ibn_a", pretrained=True)
    msg = str(exc.value)
    assert "https://github.com/XingangPan/IBN-Net/releases/download/v1.0/resnet50_ibn_a-d9d0bb7b.pth" in msg
    assert str(hub / "resnet50_ibn_a-d9d0bb7b.pth") in msg


def test_unreachable_server_names_the_cache_path(hub: Path) -> None:
    cfg = PretrainedCfg(url="http://127.0.0.1:9/tiny-00aa11bb.pth", sha256_prefix="00aa11bb")  # discard port
    with pytest.raises(CheckpointError) as exc:
        W.load_pretrained(tiny(), tiny_info(cfg), True)
    assert "could not download" in str(exc.value) and str(hub / "tiny-00aa11bb.pth") in str(exc.value)

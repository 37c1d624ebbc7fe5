"""Natural distribution shifts: the datasets' official layouts, class-subset scoring, the
protocol end to end on tiny fixture trees, effective robustness, and bad input."""
from __future__ import annotations

import hashlib
import json
import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from torch import nn

from dgbench.config import asset_path
from dgbench.data.base import Preprocess, build_dataset
from dgbench.data.imagenet import synsets
from dgbench.errors import DgbenchError
from dgbench.metrics.class_subsets import ClassMapModel, class_index, pooled_logits
from dgbench.models.registry import PretrainedCfg
from dgbench.protocols.base import RunRequest, run
from dgbench.results.natural import effective_robustness, fit_line

# sha256 of the 200 sorted WNIDs, one a line. Each list was taken from one public repository's copy of
# the datasets' evaluation lists and compared, entry by entry, with a second repository's copy (the
# second ImageNet-A copy in the original, unsorted order) before these hashes were computed.
R_SHA256 = "a6a0729f7a99230280639cab6e51e01485a3b41a676ea35621a501c9d6e83ca4"
A_SHA256 = "9826a24166e74ce62fb87b27889874ca26917542c745712309d6e25855d63bc2"
ENV = {"imagenet-v2": "DGBENCH_IMAGENET_V2", "imagenet-sketch": "DGBENCH_IMAGENET_SKETCH",
       "imagenet-r": "DGBENCH_IMAGENET_R", "imagenet-a": "DGBENCH_IMAGENET_A", "objectnet": "DGBENCH_OBJECTNET"}


def _lines(name: str) -> list[str]:
    return asset_path(name).read_text().split()


@pytest.mark.parametrize("name, sha, first, last, inside", [
    ("imagenet_r_synsets.txt", R_SHA256, "n01443537", "n12267677", ("n02106662", "n07697537")),  # goldfish, acorn
    ("imagenet_a_synsets.txt", A_SHA256, "n01498041", "n12267677", ("n03355925", "n02504458")),  # stingray, acorn
])
def test_subset_lists_match_the_published_ones(name, sha, first, last, inside):
    text = asset_path(name).read_text()
    assert hashlib.sha256(text.encode()).hexdigest() == sha
    wnids = _lines(name)
    assert len(wnids) == len(set(wnids)) == 200 and wnids == sorted(wnids)
    assert wnids[0] == first and wnids[-1] == last and all(w in wnids for w in inside)
    assert set(wnids) <= set(synsets())


def test_pooled_logits_by_hand():
    logits = torch.tensor([[1.0, 5.0, 3.0, 0.0], [2.0, 0.0, 0.0, 9.0], [0.0, 7.0, 8.0, 6.0]])
    # R/A: a subset of single classes; ObjectNet: class 2 pools ImageNet classes 0 and 3
    idx = class_index([(1,), (2,), (0, 3)])
    pooled = pooled_logits(logits, idx)
    assert pooled.tolist() == [[5.0, 3.0, 1.0], [0.0, 0.0, 9.0], [7.0, 8.0, 6.0]]
    assert pooled.argmax(1).tolist() == [0, 2, 1]
    # restricted to classes {0, 3} the third row's best is class 3 (6 > 0), though 2 wins overall
    assert pooled_logits(logits, class_index([(0,), (3,)])).argmax(1).tolist() == [0, 1, 1]
    with pytest.raises(ValueError):
        class_index([(1,), ()])


# ----------------------------------------------------------------------------- fixture trees
def _png(path, value=128, size=12, border=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    a = np.full((size, size, 3), value, np.uint8)
    if border is not None:
        a[0, :], a[-1, :], a[:, 0], a[:, -1] = border, border, border, border
    Image.fromarray(a).save(path)


def _folders(root, names, with_images):
    for n in names:
        (root / n).mkdir(parents=True, exist_ok=True)
    for n, count in with_images.items():
        for j in range(count):
            _png(root / n / f"img{j}.png")


def _objectnet(root, n_classes=113):
    """ObjectNet's layout: images/<folder>/, and mappings/ as the dataset ships them."""
    names = [f"imagenet label {i}" for i in range(1000)]  # line i: ILSVRC2012_ID i + 1
    # ILSVRC2012_ID -> pytorch index: a fixed permutation, as the real file is not the identity
    pytorch = {str(i): (i * 7) % 1000 + 1 for i in range(1000)}
    to_imagenet = {f"Thing {k}": f"imagenet label {k}" for k in range(n_classes)}
    to_imagenet["Thing 0"] = "imagenet label 0; imagenet label 5"  # a class pooling two ImageNet classes
    folders = {f"thing_{k}": f"Thing {k}" for k in range(n_classes)}
    folders["not_in_imagenet"] = "Not in ImageNet"
    m = root / "mappings"
    m.mkdir(parents=True)
    (m / "imagenet_to_label_2012_v2").write_text("\n".join(names) + "\n")
    (m / "pytorch_to_imagenet_2012_id.json").write_text(json.dumps(pytorch))
    (m / "objectnet_to_imagenet_1k.json").write_text(json.dumps(to_imagenet))
    (m / "folder_to_objectnet_label.json").write_text(json.dumps(folders))
    _folders(root / "images", [*list(folders)], {})
    for f in ("thing_0", "thing_1", "not_in_imagenet"):
        _png(root / "images" / f / "a.png", border=(255, 0, 0))


@pytest.fixture
def trees(tmp_path, monkeypatch):
    wn = synsets()
    r, a = _lines("imagenet_r_synsets.txt"), _lines("imagenet_a_synsets.txt")
    _folders(tmp_path / "val", [wn[1], wn[2]], {wn[1]: 2, wn[2]: 1})
    v2 = tmp_path / "v2"
    for sub in ("imagenetv2-matched-frequency-format-val", "imagenetv2-threshold0.7-format-val",
                "imagenetv2-top-images-format-val"):
        _folders(v2 / sub, [str(i) for i in range(1000)], {"1": 1, "7": 1})
    _folders(tmp_path / "sketch" / "sketch", wn, {wn[1]: 1, wn[3]: 1})
    _folders(tmp_path / "imagenet-r", r, {r[0]: 1, r[5]: 1})
    _folders(tmp_path / "imagenet-a", a, {a[0]: 1})
    _objectnet(tmp_path / "objectnet-1.0")
    for key, var in ENV.items():
        sub = {"imagenet-v2": "v2", "imagenet-sketch": "sketch", "objectnet": "."}.get(key, key)
        monkeypatch.setenv(var, str(tmp_path / sub))
    return tmp_path


class FixedLogits(nn.Module):
    """Every image gets the same logits: class ``best`` first, then ``second``, then the rest by index."""

    def __init__(self, best: int, second: int):
        super().__init__()
        z = -torch.arange(1000, dtype=torch.float32) / 1000
        z[best], z[second] = 10.0, 5.0
        self.register_buffer("z", z)
        self.pretrained_cfg = PretrainedCfg(input_size=(3, 8, 8), crop_pct=1.0, num_classes=1000)
        self.dgbench_name = f"fixed_{best}_{second}"

    def forward(self, x):
        return self.z.expand(x.shape[0], -1)


def test_layouts_read(trees):
    wn, r = synsets(), _lines("imagenet_r_synsets.txt")
    v2 = build_dataset("imagenet-v2-threshold-0.7")
    assert sorted(label for _, label in v2.samples) == [1, 7] and v2.class_map is None
    ir = build_dataset("imagenet-r")
    assert ir.num_classes == 200 and [label for _, label in ir.samples] == [0, 5]
    assert ir.class_map[5] == (wn.index(r[5]),)
    sk = build_dataset("imagenet-sketch")
    assert sorted(label for _, label in sk.samples) == [1, 3]


def test_objectnet_mapping_and_border(trees):
    on = build_dataset("objectnet", preprocess=Preprocess(resize_size=10, crop_size=10))
    assert on.num_classes == 113  # the folder without an ImageNet class is left out
    folders = sorted(f"thing_{k}" for k in range(113))
    # ILSVRC2012_ID k + 1 -> pytorch index p with (p * 7) % 1000 + 1 == k + 1
    inv = {(p * 7) % 1000: p for p in range(1000)}
    assert on.class_map[folders.index("thing_0")] == tuple(sorted({inv[0], inv[5]}))
    assert on.class_map[folders.index("thing_1")] == (inv[1],)
    assert {p.parent.name for p, _ in on.samples} == {"thing_0", "thing_1"}
    crop, _ = on[0]
    assert crop.shape == (3, 10, 10) and int(crop[0].max()) == 128  # the red frame is gone


def test_protocol_end_to_end(trees):
    wn, r, a = synsets(), _lines("imagenet_r_synsets.txt"), _lines("imagenet_a_synsets.txt")
    # best: wn[1] (in val, not in R); second: R's 6th class. On R, restricted, the second wins.
    model = FixedLogits(best=1, second=wn.index(r[5]))
    req = RunRequest(model=model, dataset="imagenet", data=str(trees / "val"), results=trees / "res",
                     workers=0, progress=False, batch_size=4)
    out = run("natural-shifts", req)
    by = {rec["shift"]: rec for rec in out.records}
    assert list(by) == ["imagenet", "imagenet-v2-matched-frequency", "imagenet-v2-threshold-0.7",
                        "imagenet-v2-top-images", "imagenet-sketch", "imagenet-r", "imagenet-a", "objectnet"]
    assert all(rec["kind"] == "natural-shifts" and rec["dataset"] == "imagenet" for rec in out.records)
    assert by["imagenet"]["metrics"]["top1_err"] == pytest.approx(100 / 3)  # 2 of 3 val images are class 1
    assert by["imagenet-v2-top-images"]["metrics"]["top1_err"] == pytest.approx(50.0)  # folders 1 and 7
    assert by["imagenet-sketch"]["metrics"]["top1_err"] == pytest.approx(50.0)
    # R: images of R's classes 0 and 5; restricted logits predict class 5 for both -> one right
    assert by["imagenet-r"]["metrics"]["top1_err"] == pytest.approx(50.0)
    assert by["imagenet-r"]["drop"]["top1_err"] == pytest.approx(50.0 - 100 / 3)
    # A: its one image is of A's class 0; neither favoured class is in A, so the remaining logits
    # (falling with the class index) pick A's first class: right
    assert wn[1] not in a and r[5] not in a
    assert by["imagenet-a"]["metrics"]["top1_err"] == pytest.approx(0.0)
    # ObjectNet: ImageNet class 1 is ILSVRC2012_ID 8 here, thing_7's: both images are called thing_7
    assert by["objectnet"]["metrics"]["top1_err"] == pytest.approx(100.0)
    again = run("natural-shifts", req)
    assert again.computed == 0 and again.reused == 8


def test_optional_set_missing_is_skipped_with_a_note(trees, monkeypatch):
    monkeypatch.delenv("DGBENCH_OBJECTNET")
    notes: list[str] = []
    req = RunRequest(model=FixedLogits(1, 2), dataset="imagenet", data=str(trees / "val"), store=False,
                     workers=0, progress=False, note=notes.append)
    out = run("natural-shifts", req)
    assert "objectnet" not in {rec["shift"] for rec in out.records}
    assert any("objectnet skipped" in n and "DGBENCH_OBJECTNET" in n and "objectnet.dev" in n for n in notes)


@pytest.mark.parametrize("breakage, expected", [
    ("missing-tree", "does not exist"),
    ("subset-folder-missing", "class folder missing"),
    ("wrong-layout", "not a class folder of imagenet-r"),
])
def test_bad_trees_one_line(trees, breakage, expected):
    root = trees / "imagenet-r"
    r = _lines("imagenet_r_synsets.txt")
    if breakage == "missing-tree":
        root = trees / "nowhere"
    elif breakage == "subset-folder-missing":
        (root / r[3]).rmdir()
    else:
        (root / "0").mkdir()  # an ImageNet-V2 folder in an ImageNet-R tree
    with pytest.raises(DgbenchError) as err:
        build_dataset("imagenet-r", root)
    msg = str(err.value)
    assert "\n" not in msg and expected in msg
    if breakage == "subset-folder-missing":
        assert str(root / r[3]) in msg
    assert "github.com/hendrycks/imagenet-r" in msg or breakage == "wrong-layout"


def test_objectnet_mapping_missing_file(trees):
    (trees / "objectnet-1.0" / "mappings" / "objectnet_to_imagenet_1k.json").unlink()
    with pytest.raises(DgbenchError, match="objectnet_to_imagenet_1k.json: missing"):
        build_dataset("objectnet")


def test_v2_root_at_one_variant_serves_only_that_variant(trees, monkeypatch):
    # the three ImageNet-V2 variants share DGBENCH_IMAGENET_V2: a root that is one extracted variant
    # must not be read as the other two (it once was: all three then measured the same images)
    one = trees / "v2" / "imagenetv2-threshold0.7-format-val"
    monkeypatch.setenv("DGBENCH_IMAGENET_V2", str(one))
    assert sorted(label for _, label in build_dataset("imagenet-v2-threshold-0.7").samples) == [1, 7]
    for name, sub in (("imagenet-v2-matched-frequency", "imagenetv2-matched-frequency-format-val"),
                      ("imagenet-v2-top-images", "imagenetv2-top-images-format-val")):
        with pytest.raises(DgbenchError) as err:
            build_dataset(name)
        msg = str(err.value)
        assert "\n" not in msg and str(one) in msg and f"no {sub}/ folder" in msg and "DGBENCH_IMAGENET_V2" in msg
    # a variant's class folders under another name are refused too: nothing says which variant they are
    renamed = trees / "v2" / "imagenetv2-top-images-format-val"
    renamed.rename(trees / "mine")
    with pytest.raises(DgbenchError, match="no imagenetv2-top-images-format-val/ folder"):
        build_dataset("imagenet-v2-top-images", trees / "mine")


@pytest.mark.parametrize("breakage, expected", [
    ("id-not-mapped", "pytorch_to_imagenet_2012_id.json: no class index for ILSVRC2012_ID 2 ('imagenet label 1'"),
    ("not-an-integer", "pytorch_to_imagenet_2012_id.json: entry '3': 'four' is not a class index"),
])
def test_objectnet_mapping_bad_entry_one_line(trees, breakage, expected):
    path = trees / "objectnet-1.0" / "mappings" / "pytorch_to_imagenet_2012_id.json"
    ids = json.loads(path.read_text())
    if breakage == "id-not-mapped":
        del ids[next(k for k, v in ids.items() if v == 2)]  # ILSVRC2012_ID 2: "imagenet label 1", Thing 1's
    else:
        ids["3"] = "four"
    path.write_text(json.dumps(ids))
    with pytest.raises(DgbenchError) as err:
        build_dataset("objectnet")
    assert "\n" not in str(err.value) and expected in str(err.value)


def test_no_root_names_env_var_and_source(monkeypatch):
    monkeypatch.delenv("DGBENCH_IMAGENET_A", raising=False)
    with pytest.raises(DgbenchError) as err:
        build_dataset("imagenet-a")
    assert "DGBENCH_IMAGENET_A" in str(err.value) and "natural-adv-examples" in str(err.value)


# ----------------------------------------------------------------------------- effective robustness
def test_fit_line_and_effective_robustness():
    def expit(v):
        return 1 / (1 + np.exp(-v))

    clean = np.array([0.6, 0.7, 0.8, 0.9])
    shifted = expit(0.5 * np.log(clean / (1 - clean)) - 1.0)
    slope, intercept = fit_line(clean, shifted)
    assert slope == pytest.approx(0.5) and intercept == pytest.approx(-1.0)
    # by hand: logits x = (-1, 0, 1), y = (-1, 0, 2): slope = sum(x y) / sum(x^2) = 3/2, intercept = mean(y) = 1/3
    x, y = np.array([-1.0, 0.0, 1.0]), np.array([-1.0, 0.0, 2.0])
    rows = []
    for i, (c, t) in enumerate(zip(expit(x), expit(y))):
        common = dict(kind="natural-shifts", source="dgbench", dataset="d", protocol="p", model=f"m{i}",
                      model_kwargs="", num_samples=100)
        rows.append(dict(common, shift="d", reference="", top1_err=100 - 100 * c))
        rows.append(dict(common, shift="x", reference="d", top1_err=100 - 100 * t))
    er = effective_robustness(pd.DataFrame(rows)).set_index("model")
    assert er["slope"].iloc[0] == pytest.approx(1.5) and er["intercept"].iloc[0] == pytest.approx(1 / 3)
    assert er.loc["m2", "effective_robustness"] == pytest.approx(100 * (expit(2.0) - expit(1.5 + 1 / 3)))
    assert er.loc["m0", "effective_robustness"] == pytest.approx(100 * (expit(-1.0) - expit(-1.5 + 1 / 3)))
    assert er.loc["m1", "predicted_acc"] == pytest.approx(100 * expit(1 / 3))


def test_builtin_protocol_on_the_digits(tmp_path):
    out = run("natural-shifts", RunRequest(model="ibn_a", dataset="digits", store=False, progress=False, workers=0))
    by = {rec["shift"]: rec for rec in out.records}
    assert list(by) == ["digits", "typeset-digits", "scene-digit-crops"]
    assert by["digits"]["metrics"]["top1_err"] < by["typeset-digits"]["metrics"]["top1_err"]
    assert by["scene-digit-crops"]["num_samples"] == 619
    # which released weights ran, recorded as the appearance records record it (not hashed into the key)
    assert all(rec["weights_tag"] == "builtin" and rec["weights_source"] == "published weights" for rec in out.records)


def test_committed_leaderboard_reruns_for_one_model(tmp_path):
    """`dgbench check --rerun` on the committed digits leaderboard's baseline rows (one model, to stay quick)."""
    from dgbench.config import data_dir
    from dgbench.protocols.rerun import rerun_leaderboard
    from dgbench.results.check import check

    lines = (data_dir("leaderboards") / "digits-natural-shifts.csv").read_text().splitlines()
    mine = [lines[0]] + [ln for ln in lines[1:] if ln.split(",")[3] == "small_resnet"]
    assert len(mine) == 4  # the clean set and two shifted ones
    baseline = tmp_path / "digits-natural-shifts.csv"
    baseline.write_text("\n".join(mine) + "\n")
    result = check(baseline, tmp_path / "fresh", {"all": 0.5}, rerun=rerun_leaderboard)
    assert result.missing.empty and result.extra.empty and len(result.diff) > 0
    assert result.diff["ok"].all()


@pytest.mark.parametrize("sets, expected", [
    ({"digits": {}}, "needs `shifted"),
    ({"digits": {"shifted": ["typeset-digits"], "extra": 1}}, "unknown field(s) extra"),
])
def test_bad_spec_one_line(sets, expected):
    from dgbench.errors import SpecError
    from dgbench.protocols.base import ProtocolSpec
    from dgbench.protocols.natural import NaturalShiftsProtocol

    spec = ProtocolSpec("ns", "natural-shifts", params={"sets": sets}, source="x.toml")
    with pytest.raises(SpecError) as err:
        NaturalShiftsProtocol.validate(spec, None)
    assert str(err.value).startswith("x.toml: protocols.ns.sets.digits: ") and expected in str(err.value)


def test_site_page_draws_the_effective_robustness_figure_once_with_its_caption(tmp_path):
    from dgbench.config import data_dir
    from dgbench.results.site import build_board
    from dgbench.results.site_pages import board_page

    board = build_board(data_dir("leaderboards") / "digits-natural-shifts.csv", None)
    assert len(board.plots) == 1  # the scatter is of top-1 accuracy whatever the metric: drawn once
    page = board_page(board)
    assert page.count("data:image/png") == 1 and "effective robustness: each model" in page
    assert "drop per model" not in page

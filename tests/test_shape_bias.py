"""Shape bias (issue 22): the counts and ratios, model-vs-human's 16-class decision, the official
cue-conflict layout (a tiny fixture tree end to end), its bad inputs, and the built-in digits set."""
from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn
from typer.testing import CliRunner

from dgbench.cli import app
from dgbench.data.base import build_dataset
from dgbench.data.cue_conflict import MAPPING_FILE, categories, imagenet_16class
from dgbench.errors import DatasetNotFoundError, DgbenchError
from dgbench.metrics.shape_bias import CategoryMap, count_decisions
from dgbench.models.registry import PretrainedCfg
from dgbench.protocols import RunRequest, run as run_protocol

REPO = Path(__file__).resolve().parents[1]
runner = CliRunner()


def cli(*args: str) -> tuple[int, str]:
    res = runner.invoke(app, list(args), env={"COLUMNS": "200"})
    if isinstance(res.exception, DgbenchError):  # dgbench's main() prints these as one line, status 2
        return 2, str(res.exception)
    if res.exception is not None and not isinstance(res.exception, SystemExit):
        raise res.exception
    return res.exit_code, res.output


# ----------------------------------------------------------------------------- counting
def test_counts_and_ratios_by_hand() -> None:
    # shape, texture, decision: 3 shape hits, 1 texture hit, 2 other, 2 same-class images (excluded
    # whatever the decision, even a "correct" one)
    shape = [0, 1, 2, 3, 4, 5, 6, 7]
    texture = [1, 2, 3, 4, 5, 6, 6, 7]
    decide = [0, 1, 2, 4, 9, 9, 6, 0]
    c = count_decisions(decide, shape, texture)
    assert (c.shape, c.texture, c.other, c.excluded) == (3, 1, 2, 2)
    assert c.shape_bias() == pytest.approx(3 / 4) and c.cue_accuracy() == pytest.approx(4 / 6)
    none = count_decisions([5], [0], [1])
    assert math.isnan(none.shape_bias()) and none.cue_accuracy() == 0.0


# ----------------------------------------------------------------------------- the 16 classes
def test_the_16_class_map_matches_an_independent_copy() -> None:
    """Entries typed from rgeirhos/texture-vs-shape's code/helper/human_categories.py (the same
    lists as model-vs-human's), and the sha256 of the whole map."""
    cats = imagenet_16class()
    assert list(cats) == sorted(["knife", "keyboard", "elephant", "bicycle", "airplane", "clock", "oven", "chair",
                                 "bear", "boat", "cat", "bottle", "truck", "car", "bird", "dog"])
    known = {"airplane": (404,), "bear": (294, 295, 296, 297), "bicycle": (444, 671), "boat": (472, 554, 625, 814, 914),
             "bottle": (440, 720, 737, 898, 899, 901, 907), "car": (436, 511, 817), "cat": (281, 282, 283, 284, 285, 286),
             "chair": (423, 559, 765, 857), "clock": (409, 530, 892), "elephant": (385, 386), "keyboard": (508, 878),
             "knife": (499,), "oven": (766,), "truck": (555, 569, 656, 675, 717, 734, 864, 867)}
    assert {k: cats[k] for k in known} == known
    dog = [*range(152, 192), *range(193, 204), *range(205, 227), *range(228, 242), *range(243, 251),
           *range(252, 258), 259, *range(261, 264), *range(265, 269)]  # the source's list, as runs
    assert cats["dog"] == tuple(dog) and len(dog) == 109
    assert cats["bird"][:3] == (8, 10, 11) and cats["bird"][-1] == 145 and len(cats["bird"]) == 49
    members = [i for idx in cats.values() for i in idx]
    assert len(members) == len(set(members)) == 207
    canonical = json.dumps(json.loads(MAPPING_FILE.read_text())["categories"], sort_keys=True, separators=(",", ":"))
    assert hashlib.sha256(canonical.encode()).hexdigest() == \
        "df55a60f0cd62d43c5f7fb83a82a1042656cc3262a0ecb2c9db7de23afec722b"


def test_the_indices_are_the_wnids_of_model_vs_humans_lists() -> None:
    """The same file lists the categories as WordNet ids too; through dgbench's synset order they
    give exactly the stored indices (checked for the categories whose WNID lists are short)."""
    from dgbench.data.imagenet import synsets

    wnids = {"knife": ["n03041632"], "oven": ["n03259401", "n04111414", "n04111531"],
             "elephant": ["n02504013", "n02504458"], "bicycle": ["n02835271", "n03792782"],
             "clock": ["n02708093", "n03196217", "n04548280"],
             "bear": ["n02132136", "n02133161", "n02134084", "n02134418"],
             "car": ["n02814533", "n03100240", "n03100346", "n13419325", "n04285008"]}
    order = synsets()
    for cat, ids in wnids.items():
        assert tuple(i for i, w in enumerate(order) if w in ids) == imagenet_16class()[cat], cat


def test_the_decision_averages_probabilities_per_category() -> None:
    cats = imagenet_16class()
    cmap = CategoryMap(tuple(cats), tuple(cats.values()), 1000)
    logits = torch.zeros(3, 1000)
    # 1: the top class is a dog (10.0) but airplane's one class (9.5) has the higher *mean*
    #    probability: dog's mass is spread over 109 classes
    logits[0, 152], logits[0, 404] = 10.0, 9.5
    # 2: knife (one class) vs a boat class: knife wins by its logit
    logits[1, 499], logits[1, 472] = 3.0, 2.0
    # 3: knife's and airplane's one class tie at the top: the first category (airplane) wins
    logits[2, 499], logits[2, 404] = 4.0, 4.0
    names = list(cats)
    got = [names[i] for i in cmap.decide(logits)]
    assert got == ["airplane", "knife", "airplane"]
    p = torch.softmax(logits[0], 0)
    assert p[list(cats["airplane"])].mean() > p[list(cats["dog"])].mean() and int(logits[0].argmax()) == 152
    assert CategoryMap.identity("0123").decide(torch.tensor([[0.0, 3.0, 1.0, 2.0]])).tolist() == [1]
    with pytest.raises(ValueError, match=r"\[N, 1000\]"):
        cmap.decide(torch.zeros(2, 10))


# ----------------------------------------------------------------------------- the official layout
# (file, the category the oracle model answers): 2 shape, 1 texture, 1 other, 1 excluded
FIXTURE = [("airplane/airplane1-bicycle1.png", "airplane"), ("bear/bear1-cat1.png", "cat"),
           ("boat/boat1-car1.png", "dog"), ("bird/bird1-bird2.png", "bird"), ("knife/knife1-oven1.png", "knife")]


def make_tree(root: Path) -> Path:
    names = categories()
    for c in names:
        (root / c).mkdir(parents=True, exist_ok=True)
    for rel, answer in FIXTURE:  # a solid grey that tells the oracle what to answer
        grey = 10 * names.index(answer) + 5
        Image.fromarray(np.full((8, 8, 3), grey, dtype=np.uint8)).save(root / rel)
    return root


class Oracle(nn.Module):
    """Answers the category a solid image's grey level encodes (``10 * index + 5``), as 1000 logits."""

    def __init__(self) -> None:
        super().__init__()
        self.pretrained_cfg = PretrainedCfg(input_size=(3, 32, 32), crop_pct=1.0, mean=(0.0,) * 3, std=(1.0,) * 3)
        self.dgbench_name = "oracle"
        self.first = [idx[0] for idx in imagenet_16class().values()]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k = ((x[:, 0].mean(dim=(1, 2)) * 255 - 5) / 10).round().long()
        out = torch.zeros(x.shape[0], 1000)
        out[torch.arange(x.shape[0]), torch.tensor([self.first[i] for i in k])] = 20.0
        return out


def test_a_fixture_tree_runs_end_to_end(tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "cue-conflict")
    ds = build_dataset("cue-conflict", tree)
    names = categories()
    assert len(ds) == 5 and ds[0][0].shape == (3, 224, 224)
    assert [names[s] for s in ds.shape_labels] == ["airplane", "bear", "bird", "boat", "knife"]
    assert [names[t] for t in ds.texture_labels] == ["bicycle", "cat", "bird", "car", "oven"]
    tagged = Oracle()
    tagged.weights_tag = "a_release"  # which released weights ran: recorded beside the key, not in it
    summary = run_protocol("shape-bias", RunRequest(model=tagged, data=tree, results=tmp_path / "res",
                                                    device="cpu", progress=False))
    (rec,) = summary.records
    assert rec["weights_tag"] == "a_release" and rec["weights_source"] == "module passed by the caller"
    assert summary.dataset == "cue-conflict" and rec["kind"] == "shape-bias"
    assert rec["decisions"] == {"shape": 2, "texture": 1, "other": 1, "excluded": 1}
    assert all(isinstance(v, int) for v in rec["decisions"].values())
    assert rec["metrics"]["shape_bias"] == pytest.approx(100 * 2 / 3)
    assert rec["metrics"]["cue_acc"] == pytest.approx(75.0) and rec["metrics"]["texture_match"] == pytest.approx(25.0)
    again = run_protocol("shape-bias", RunRequest(model=Oracle(), data=tree, results=tmp_path / "res",
                                                  device="cpu", progress=False))
    assert again.computed == 0 and again.reused == 1  # stored: skipped
    digits_net = Oracle()
    digits_net.pretrained_cfg = PretrainedCfg(input_size=(3, 32, 32), crop_pct=1.0, num_classes=10)
    with pytest.raises(DgbenchError, match="10 outputs; cue-conflict's category map reads 1000"):
        run_protocol("shape-bias", RunRequest(model=digits_net, data=tree, store=False, device="cpu", progress=False))


def test_bad_trees_are_one_line_naming_the_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DGBENCH_CUE_CONFLICT", raising=False)
    with pytest.raises(DatasetNotFoundError, match="DGBENCH_CUE_CONFLICT"):
        build_dataset("cue-conflict")
    with pytest.raises(DatasetNotFoundError, match=f"no folder {tmp_path / 'nowhere'}.*texture-vs-shape"):
        build_dataset("cue-conflict", tmp_path / "nowhere")
    tree = make_tree(tmp_path / "t")
    (tree / "oven").rmdir()
    with pytest.raises(DatasetNotFoundError, match=f"{tree} lacks class folder\\(s\\) oven; expected the 16"):
        build_dataset("cue-conflict", tree)
    (tree / "oven").mkdir()
    bad = tree / "airplane" / "plane.png"
    bad.write_bytes(b"")
    with pytest.raises(DatasetNotFoundError, match=f"{bad}: expected a name <shape><i>-<texture><j>.png"):
        build_dataset("cue-conflict", tree)
    bad.unlink()
    moved = tree / "airplane" / "bear2-cat1.png"
    moved.write_bytes(b"")
    with pytest.raises(DatasetNotFoundError, match="shape class 'bear' is not its folder 'airplane'"):
        build_dataset("cue-conflict", tree)
    code, out = cli("run", "--protocol", "shape-bias", "--data", str(tmp_path / "nowhere"),
                    "--results", str(tmp_path / "res"))
    assert code == 2 and len(out.strip().splitlines()) == 1 and str(tmp_path / "nowhere") in out


# ----------------------------------------------------------------------------- the built-in set
def test_the_builtin_set_is_deterministic_and_renders_as_documented() -> None:
    from dgbench.builtin.cue_conflict import PER_PAIR, generate, render

    images, shapes, textures = generate()
    assert images.shape == (10 * 10 * PER_PAIR, 32, 32) and images.dtype == np.uint8
    assert int((shapes == textures).sum()) == 10 * PER_PAIR
    assert np.bincount(shapes).tolist() == [10 * PER_PAIR] * 10 == np.bincount(textures).tolist()
    fresh = generate.__wrapped__()
    assert all(np.array_equal(a, b) for a, b in zip(fresh, (images, shapes, textures)))
    a = np.arange(64, dtype=np.uint8).reshape(8, 8) % 17
    full = np.full((8, 8), 16, dtype=np.uint8)
    grey = np.round(np.arange(17) * 255 / 16).astype(np.uint8)
    assert np.array_equal(render(full, a), np.tile(grey[a], (4, 4)))  # all-ink shape: the texture, tiled
    assert np.array_equal(render(a, full), np.kron(grey[a], np.ones((4, 4), dtype=np.uint8)))  # the shape, 4x


def test_builtin_shape_bias_via_the_cli(tmp_path: Path) -> None:
    res = str(tmp_path / "res")
    code, out = cli("run", "--model", "ibn_b", "--protocol", "shape-bias", "--results", res, "--no-progress")
    assert code == 0, out
    assert "digit-cue-conflict · shape-bias" in out and "small_resnet_ibn_b" in out
    code, out = cli("table", "--protocol", "shape-bias", "--results", res, "--format", "csv")
    assert code == 0 and out.splitlines()[0].startswith("model,shape bias %"), out
    code, out = cli("plot", "--protocol", "shape-bias", "--results", res, "--out", str(tmp_path / "p.png"))
    assert code == 0 and (tmp_path / "p.png").stat().st_size > 1000, out
    # the committed leaderboard's row of this model, re-measured (dgbench check --rerun), within 0.5
    committed = (REPO / "leaderboards" / "digit-cue-conflict-shape-bias.csv").read_text().splitlines()
    one = tmp_path / "one.csv"
    one.write_text("\n".join([committed[0]] + [r for r in committed if ",small_resnet_ibn_b," in r]) + "\n")
    code, out = cli("check", "--baseline", str(one), "--rerun", "--tolerance", "all=0.5", "--results", res)
    assert code == 0 and "check passed: 4 value(s)" in out, out
    code, out = cli("leaderboard", "publish", "--results", res, "--out", str(tmp_path / "lb"), "--html")
    assert code == 0 and (tmp_path / "lb" / "digit-cue-conflict-shape-bias.html").is_file(), out


def test_a_leaderboard_with_a_bad_count_is_one_line(tmp_path: Path) -> None:
    from dgbench.results.leaderboard import load_leaderboard
    from dgbench.results.csvio import LeaderboardError

    lines = (REPO / "leaderboards" / "digit-cue-conflict-shape-bias.csv").read_text().splitlines()
    bad = tmp_path / "bad.csv"
    bad.write_text("\n".join([lines[0], lines[1].replace(",1,93,", ",1,-3,")]) + "\n")
    with pytest.raises(LeaderboardError, match=r"bad.csv:2: column 'shape_decisions'"):
        load_leaderboard(bad)

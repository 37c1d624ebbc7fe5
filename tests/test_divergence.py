"""The divergence protocol (Section 4.3): the KL formula, streamed moments, probes, pairs, ranks."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from dgbench.errors import SpecError
from dgbench.metrics.divergence import Moments, gaussian_kl, layer_divergence, merge, symmetric_kl
from dgbench.models.probes import find_probes
from dgbench.protocols.base import ProtocolSpec, RunRequest, run
from dgbench.protocols.divergence import DivergenceProtocol
from dgbench.protocols.divergence_pairs import class_halves, parse_pairs

from appearance_fixtures import env_isolated, folder_tree


def _proto(pairs: dict, name: str = "div-test") -> DivergenceProtocol:
    return DivergenceProtocol(ProtocolSpec(name=name, kind="divergence", params={"pairs": pairs}, source="test"))


def _run(pairs: dict, model, tmp_path: Path, **kw):
    req = RunRequest(model=model, results=tmp_path / "results", workers=0, progress=False, batch_size=32,
                     pretrained=False, **kw)
    return run(_proto(pairs), req)


# ----------------------------------------------------------------------------- the formula
def test_symmetric_kl_equals_torch_distributions_both_ways() -> None:
    g = torch.Generator().manual_seed(0)
    mu_a, mu_b = torch.randn(50, generator=g, dtype=torch.float64), torch.randn(50, generator=g, dtype=torch.float64)
    var_a = torch.rand(50, generator=g, dtype=torch.float64) + 0.05
    var_b = torch.rand(50, generator=g, dtype=torch.float64) * 3 + 0.05
    na, nb = torch.distributions.Normal(mu_a, var_a.sqrt()), torch.distributions.Normal(mu_b, var_b.sqrt())
    ab, ba = torch.distributions.kl_divergence(na, nb), torch.distributions.kl_divergence(nb, na)
    torch.testing.assert_close(gaussian_kl(mu_a, var_a, mu_b, var_b), ab, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(gaussian_kl(mu_b, var_b, mu_a, var_a), ba, rtol=1e-12, atol=1e-12)
    assert (ab - ba).abs().max() > 0.1  # the two directions differ: swapping them would be caught
    torch.testing.assert_close(symmetric_kl(mu_a, var_a, mu_b, var_b), ab + ba, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(symmetric_kl(mu_b, var_b, mu_a, var_a), ab + ba, rtol=1e-12, atol=1e-12)


def test_layer_divergence_is_the_channel_mean_of_eq_2() -> None:
    g = torch.Generator().manual_seed(1)
    fa, fb = torch.randn(40, 6, generator=g, dtype=torch.float64), torch.randn(30, 6, generator=g, dtype=torch.float64) * 2 + 1
    a, b = Moments.of(fa), Moments.of(fb)
    na = torch.distributions.Normal(fa.mean(0), fa.var(0, unbiased=False).add(1e-8).sqrt())
    nb = torch.distributions.Normal(fb.mean(0), fb.var(0, unbiased=False).add(1e-8).sqrt())
    ref = (torch.distributions.kl_divergence(na, nb) + torch.distributions.kl_divergence(nb, na)).mean()
    assert layer_divergence(a, b) == pytest.approx(float(ref), rel=1e-12)


# ----------------------------------------------------------------------------- streaming moments
def test_streamed_moments_equal_a_two_pass_computation() -> None:
    g = torch.Generator().manual_seed(2)
    # A large offset and a small spread: naive sum-of-squares would lose the variance here.
    f = (torch.randn(997, 33, generator=g) * 0.05 + 1000.0).float()
    m = Moments.empty(33)
    sizes = [0, 1, 7, 64, 300, 0, 625]
    start = 0
    for n in sizes:
        m.update(f[start:start + n])
        start += n
    ref = f.double()
    assert m.count == 997
    torch.testing.assert_close(m.mean, ref.mean(0), rtol=1e-13, atol=0)
    torch.testing.assert_close(m.var, ref.var(0, unbiased=False), rtol=1e-9, atol=0)
    # two shards merged, either order, equal the whole
    a, b = Moments.of(f[:400]), Moments.of(f[400:])
    for j in (merge(a, b), merge(b, a), Moments.from_tensor(merge(a, b).as_tensor())):
        torch.testing.assert_close(j.var, ref.var(0, unbiased=False), rtol=1e-9, atol=0)


def test_identical_domains_give_zero_and_different_ones_do_not() -> None:
    g = torch.Generator().manual_seed(3)
    f = torch.randn(100, 8, generator=g).relu()
    f[:, 0] = 0.0  # a dead channel: variance 0 in both domains
    a, b = Moments.of(f), Moments.of(f.clone())
    assert layer_divergence(a, b) == 0.0
    assert layer_divergence(a, Moments.of(f * 1.1)) > 1e-3


def test_identical_domains_give_zero_end_to_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env_isolated(monkeypatch, tmp_path)
    s = _run({"digits": {"same": {"shift": "origin"}, "typeset": {"domains": ["digits", "typeset-digits"]}}},
             "small_resnet_ibn_a", tmp_path, limit=48)
    by = {(r["pair"], r["layer"]): r["metrics"]["divergence"] for r in s.records}
    assert [by[("same", n)] for n in ("stem", "layer1.0", "layer2.0", "layer3.0", "layer4.0")] == [0.0] * 5
    assert min(by[("typeset", n)] for n in ("stem", "layer1.0")) > 0.01


# ----------------------------------------------------------------------------- IN removes a scale
class _INFirst(nn.Module):
    """The first layer is an IN of the input: a positive per-channel scale of the image cancels."""

    def __init__(self, cfg) -> None:
        super().__init__()
        self.norm = nn.InstanceNorm2d(3)
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1)
        self.relu2 = nn.ReLU()
        self.pretrained_cfg = cfg
        self.dgbench_name = "in_first"

    def divergence_probes(self):
        return [("in", self.relu, True), ("block", self.relu2)]

    def forward(self, x):
        return self.relu2(self.conv2(self.relu(self.conv(self.norm(x)))))


def test_a_model_whose_first_layer_is_in_gives_zero_for_a_positive_scale(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import dgbench

    env_isolated(monkeypatch, tmp_path)
    pairs = {"digits": {"std-x1.5": {"shift": "std-x1.5"}}}
    torch.manual_seed(0)
    cfg = dgbench.create_model("small_resnet").pretrained_cfg
    rec = _run(pairs, _INFirst(cfg), tmp_path, limit=64).records
    assert [r["has_in"] for r in rec] == [True, False]
    assert rec[0]["metrics"]["divergence"] < 1e-6 and rec[1]["metrics"]["divergence"] < 1e-6
    # The zoo's IBN-b (a bias-free conv, then IN) likewise; the BN baseline is not invariant.
    recs = _run(pairs, ["small_resnet_ibn_b", "small_resnet"], tmp_path, limit=64).records
    stem = {r["model"]: r["metrics"]["divergence"] for r in recs if r["layer"] == "stem"}
    assert stem["small_resnet_ibn_b"] < 1e-6
    assert stem["small_resnet"] > 0.1


# ----------------------------------------------------------------------------- probes, pairs
def test_resnet50_has_the_papers_17_probes_and_ibn_marks() -> None:
    import dgbench

    names = {m: find_probes(dgbench.create_model(m)) for m in ("resnet50", "resnet50_ibn_a", "resnet50_ibn_b")}
    assert [p.name for p in names["resnet50"]][:3] == ["stem", "layer1.0", "layer1.1"] and len(names["resnet50"]) == 17
    assert not any(p.has_in for p in names["resnet50"])
    assert [p.index for p in names["resnet50_ibn_b"] if p.has_in] == [1, 4, 8]  # stem, end of conv2_x, conv3_x
    assert [p.index for p in names["resnet50_ibn_a"] if p.has_in] == list(range(2, 15))  # groups 1-3


def test_class_halves_by_index_and_seeded() -> None:
    assert class_halves([3, 1, 0, 2, 4, 5, 1], "index", 0) == ([0, 1, 2], [3, 4, 5])
    a, b = class_halves(list(range(10)), "seeded", 7)
    assert sorted(a + b) == list(range(10)) and len(a) == 5 and a != [0, 1, 2, 3, 4]
    assert class_halves(list(range(10)), "seeded", 7) == (a, b)


@pytest.mark.parametrize("pair, match", [
    ({"shift": "std-x1.5", "classes": "index"}, "exactly one of"),
    ({"domains": ["digits"]}, "two different datasets"),
    ({"classes": "random"}, "index, seeded"),
    ({"classes": "index", "seed": 3}, "seed applies"),
    ({"shift": "x", "colour": 1}, "unknown field 'colour'"),
])
def test_bad_pairs_are_named(pair: dict, match: str) -> None:
    with pytest.raises(SpecError, match=f"file.toml: protocols.p.pairs.digits.bad: .*{match}"):
        parse_pairs({"pairs": {"digits": {"bad": pair}}}, "file.toml", "p")


def test_a_dataset_without_pairs_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from dgbench.errors import DgbenchError

    env_isolated(monkeypatch, tmp_path)
    with pytest.raises(DgbenchError, match="no domain pairs for dataset 'typeset-digits'"):
        _run({"digits": {"s": {"shift": "std-x1.5"}}}, "small_resnet", tmp_path, dataset="typeset-digits")


def test_an_optional_pair_without_its_data_is_skipped_with_a_note(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env_isolated(monkeypatch, tmp_path)
    monkeypatch.delenv("DGBENCH_CITYSCAPES", raising=False)
    notes: list[str] = []
    pairs = {"digits": {"scenes": {"domains": ["cityscapes", "gta5"], "optional": True}, "s": {"shift": "std-x1.5"}}}
    s = _run(pairs, "small_resnet", tmp_path, limit=16, note=notes.append)
    assert {r["pair"] for r in s.records} == {"s"}
    assert any(n.startswith("pair scenes skipped") for n in notes)
    from dgbench.errors import DgbenchError

    with pytest.raises(DgbenchError):  # not optional: the missing data are an error
        _run({"digits": {"scenes": {"domains": ["cityscapes", "gta5"]}}}, "small_resnet", tmp_path, limit=16)


def test_stored_pairs_are_reused_not_recomputed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env_isolated(monkeypatch, tmp_path)
    pairs = {"digits": {"halves": {"classes": "index"}, "s": {"shift": "std-x1.5"}}}
    first = _run(pairs, "small_resnet", tmp_path, limit=40)
    again = _run(pairs, "small_resnet", tmp_path, limit=40)
    assert (first.computed, again.computed, again.reused) == (10, 0, 10)
    assert [r["key"] for r in first.records] == [r["key"] for r in again.records]
    assert len({r["key"] for r in first.records}) == 10  # one key per (pair, layer)
    assert [r["pair"] for r in first.records[::5]] == ["halves", "s"]  # the protocol's order


# ----------------------------------------------------------------------------- ImageNet layout
@pytest.mark.slow
def test_imagenet_tree_gives_the_fig5_groups_for_three_models(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """resnet50, IBN-a, IBN-b (random weights) on a synset-layout tree plus generated Cityscapes and
    GTA5 trees: Fig. 5's three groups in one run; no Monet cache, so the photo-Monet pair falls
    back to cv-stylize and says so."""
    from dgbench.protocols import get
    from seg_fixtures import make_cityscapes, make_gta5

    env_isolated(monkeypatch, tmp_path)
    root = folder_tree(tmp_path / "val", [0, 2], size=(64, 48))  # few images: three ResNet-50s on a CPU
    roots = {"cityscapes": str(make_cityscapes(tmp_path / "cs", cities=("aachen",), per_city=1)),
             "gta5": str(make_gta5(tmp_path / "gta", n=4))}
    notes: list[str] = []
    req = RunRequest(model="resnet50,ibn_a,ibn_b", data=root, results=tmp_path / "results", workers=0,
                     progress=False, pretrained=False, batch_size=8, note=notes.append, options={"roots": roots})
    s = run(get("divergence"), req)
    assert len(s.records) == 3 * 3 * 17
    assert [r["pair"] for r in s.records[::17]][:3] == ["cityscapes-gta5", "photo-monet", "classes-500-500"]
    assert {r["model"] for r in s.records} == {"resnet50", "resnet50_ibn_a", "resnet50_ibn_b"}
    scenes = [r for r in s.records if r["pair"] == "cityscapes-gta5"]
    assert [d["name"] for d in scenes[0]["pair_spec"]["datasets"]] == ["cityscapes", "gta5"]
    assert scenes[0]["domain_sizes"] == [1, 1]
    content = [r for r in s.records if r["pair"] == "classes-500-500"]
    assert content[0]["pair_spec"]["halves"] == [[0], [2]] and content[0]["domain_sizes"] == [1, 1]
    style = [r for r in s.records if r["pair"] == "photo-monet"]
    assert {r["pair_spec"]["shift_spec"]["name"] for r in style} == {"cv-stylize"}
    assert any("using cv-stylize" in n for n in notes)
    assert all(r["metrics"]["divergence"] >= 0 for r in s.records)


# ----------------------------------------------------------------------------- ranks
_SCRIPT = """
import sys
from dgbench.protocols.base import ProtocolSpec, RunRequest, run
from dgbench.protocols.divergence import DivergenceProtocol
pairs = {"digits": {"typeset": {"domains": ["digits", "typeset-digits"]}, "std": {"shift": "std-x1.5"},
                    "halves": {"classes": "seeded", "seed": 1}}}
proto = DivergenceProtocol(ProtocolSpec("div-ranks", "divergence", params={"pairs": pairs}))
run(proto, RunRequest(model="small_resnet_ibn_a,small_resnet_ibn_b", limit=37, results=sys.argv[1],
                      workers=0, progress=False, batch_size=8, pretrained=False))
"""


@pytest.mark.slow
def test_world_size_1_and_2_give_the_same_numbers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """torchrun, 2 CPU ranks (gloo): 37 images shard 19 + 18; the gathered moments give the single
    process's divergences, and rank 0 alone writes them."""
    env_isolated(monkeypatch, tmp_path)
    script = tmp_path / "div.py"
    script.write_text(_SCRIPT)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for name, launcher in (("one", []), ("two", ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"])):
        out = subprocess.run([sys.executable, *launcher, str(script), str(tmp_path / name)], env=env,
                             capture_output=True, text=True, timeout=600)
        assert out.returncode == 0, out.stderr[-3000:]
    one, two = ([json.loads(x) for x in (tmp_path / n / "div-ranks.jsonl").read_text().splitlines()] for n in ("one", "two"))
    assert len(one) == len(two) == 2 * 3 * 5, "rank 0 alone writes"
    assert {r["world_size"] for r in one} == {1} and {r["world_size"] for r in two} == {2}
    for a, b in zip(one, two):
        assert (a["key"], a["num_samples"], a["domain_sizes"]) == (b["key"], b["num_samples"], b["domain_sizes"])
        assert b["metrics"]["divergence"] == pytest.approx(a["metrics"]["divergence"], rel=1e-9, abs=1e-12)
    assert any(r["metrics"]["divergence"] > 0.01 for r in one)


def test_in_marks_follow_the_variant() -> None:
    import dgbench

    marks = {v: [p.has_in for p in find_probes(dgbench.create_model(f"small_resnet{v}"))] for v in ("", "_ibn_a", "_ibn_b")}
    assert marks == {"": [False] * 5, "_ibn_a": [False, True, True, True, False],
                     "_ibn_b": [True, True, True, False, False]}


def test_a_model_without_probes_is_named_alone_and_skipped_among_several(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from dgbench.errors import DgbenchError

    env_isolated(monkeypatch, tmp_path)
    pairs = {"digits": {"s": {"shift": "std-x1.5"}}}
    with pytest.raises(DgbenchError, match="densenet121: the divergence analysis probes residual networks"):
        _run(pairs, "densenet121", tmp_path, limit=8)
    notes: list[str] = []
    s = _run(pairs, "small_resnet,densenet121", tmp_path, limit=8, note=notes.append)
    assert {r["model"] for r in s.records} == {"small_resnet"}
    assert notes[-1] == "skipped 1 model(s) that are not residual networks (no probes): densenet121"

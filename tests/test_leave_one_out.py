"""Leave-one-domain-out: dataset layouts, splits, model selection, the protocol end to end, bad input."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from dgbench.data.domain_folders import DOMAIN_SETS, GENERIC, hash_order, holdout_split, load_folder_domains
from dgbench.errors import DgbenchError
from dgbench.protocols.base import ProtocolSpec, RunRequest
from dgbench.protocols.leave_one_out import LeaveOneOutProtocol, held_out_sets
from dgbench.results import model_selection as ms
from dgbench.runtime import Runtime

CLASSES = ("dog", "horse")


def make_tree(root, domains, classes=CLASSES, per_class=3):
    """``root/<domain>/<class>/<i>.jpg``: tiny images whose colour depends on the domain."""
    for di, d in enumerate(domains):
        for ci, c in enumerate(classes):
            (root / d / c).mkdir(parents=True)
            for i in range(per_class):
                arr = np.full((12, 10, 3), (30 * di + 100 * ci + i) % 256, dtype=np.uint8)
                Image.fromarray(arr).save(root / d / c / f"{i}.jpg")
    return root


def tiny_protocol(dataset, pairs=False):
    spec = ProtocolSpec("loo-test", "leave-one-out", params={
        "datasets": [dataset], "trials": 1, "hparam_sets": 1, "leave_one_out_runs": pairs,
        "recipes": {dataset: {"steps": 2, "checkpoint_freq": 1, "eval_batch_size": 8, "image_size": 16}}})
    return LeaveOneOutProtocol(spec)


def run_tiny(tmp_path, dataset, root, pairs=False, **options):
    req = RunRequest(model="small_resnet", dataset=dataset, data=root, pretrained=False, results=tmp_path / "res",
                     progress=False, options=options)
    with Runtime.start("cpu") as rt:
        return tiny_protocol(dataset, pairs).run(req, rt)


@pytest.mark.parametrize("name", [*DOMAIN_SETS, GENERIC])
def test_each_layout_runs_end_to_end(tmp_path, name):
    domains = DOMAIN_SETS[name].domains if name in DOMAIN_SETS else ("a", "b", "c")
    n_classes = DOMAIN_SETS[name].num_classes if name in DOMAIN_SETS else len(CLASSES)
    per_class = 3 if n_classes <= 10 else 1  # OfficeHome's 65, DomainNet's 345 classes: one image each
    classes = CLASSES if name == GENERIC else tuple(f"class_{i:03d}" for i in range(n_classes))
    root = make_tree(tmp_path / "data", domains, classes, per_class)
    summary = run_tiny(tmp_path, name, root, held_out=domains[0])
    assert summary.computed == 1
    rec = summary.records[0]
    assert rec["kind"] == "leave-one-out" and rec["test_domain"] == domains[0]
    # DomainBed's training augmentation on; BatchNorm not frozen without ImageNet weights (--no-pretrained)
    assert rec["dg_run"]["hparams"]["data_augmentation"] is True and rec["dg_run"]["hparams"]["freeze_bn"] is False
    evals = rec["dg_run"]["evaluations"]
    assert [e["step"] for e in evals] == [1, 2]
    assert set(evals[-1]["acc"]) == set(domains)
    assert evals[-1]["acc"][domains[0]]["in"] is not None and evals[-1]["acc"][domains[1]]["in"] is None
    assert rec["subset"]["splits"]["domains"][domains[1]]["out"] == round(0.2 * n_classes * per_class)
    again = run_tiny(tmp_path, name, root, held_out=domains[0])  # stored: nothing recomputed
    assert again.computed == 0 and again.reused == 1


def test_pair_runs_and_all_three_selections(tmp_path):
    from dgbench.results.leave_one_out import summary_rows

    root = make_tree(tmp_path / "data", ("a", "b", "c"))
    summary = run_tiny(tmp_path, GENERIC, root, pairs=True, held_out="a", hparam_sets=2)
    assert sorted(r["test_domain"] for r in summary.records) == ["a", "a", "a+b", "a+b", "a+c", "a+c"]
    drawn = {r["dg_run"]["hparams_seed"]: r["dg_run"]["hparams"] for r in summary.records}
    assert drawn[0]["lr"] == 5e-5 and drawn[1] != drawn[0]  # set 0: the defaults; set 1: a draw
    runs = [{**r["dg_run"], "model": r["model"], "model_kwargs": ""} for r in summary.records]
    rows = summary_rows(GENERIC, "loo-test", runs)
    assert {r["selection"] for r in rows} == set(ms.METHODS)


def test_splits_nested_and_stable():
    keys = [f"cls/{i}.jpg" for i in range(200)]
    small, big = holdout_split(keys, 3, 0.1), holdout_split(keys, 3, 0.2)
    assert len(big["out"]) == 40 and set(small["out"]) <= set(big["out"])
    assert sorted(big["in"] + big["out"]) == list(range(200))
    assert holdout_split(keys, 3) == big and holdout_split(keys, 4) != big
    # stable: added files keep the old files' order (a file's side depends on its own hash and the cut)
    grown = hash_order(keys + [f"cls/new{i}.jpg" for i in range(50)], 3)
    assert [i for i in grown if i < 200] == hash_order(keys, 3)


def _run(h, held, evals, trial=0):
    return {"model": "m", "model_kwargs": "", "algorithm": "erm", "trial": trial, "hparams_seed": h,
            "held_out": held, "evaluations": evals}


def _ev(step, **acc):
    return {"step": step, "acc": {d: {"in": v[0], "out": v[1]} for d, v in acc.items()}}


def hand_runs():
    # test domain t; training domains u, v. Two hparam sets, steps 1 and 2.
    return [
        _run(0, ("t",), [_ev(1, t=(50, 60), u=(None, 90), v=(None, 70)), _ev(2, t=(55, 40), u=(None, 80), v=(None, 70))]),
        _run(1, ("t",), [_ev(1, t=(70, 30), u=(None, 60), v=(None, 60)), _ev(2, t=(65, 50), u=(None, 85), v=(None, 85))]),
        _run(0, ("t", "u"), [_ev(1, t=(0, 0), u=(80, 0), v=(None, 0)), _ev(2, t=(0, 0), u=(40, 0), v=(None, 0))]),
        _run(0, ("t", "v"), [_ev(1, t=(0, 0), u=(None, 0), v=(60, 0)), _ev(2, t=(0, 0), u=(None, 0), v=(90, 0))]),
        _run(1, ("t", "u"), [_ev(1, t=(0, 0), u=(75, 0), v=(None, 0)), _ev(2, t=(0, 0), u=(70, 0), v=(None, 0))]),
        _run(1, ("t", "v"), [_ev(1, t=(0, 0), u=(None, 0), v=(70, 0)), _ev(2, t=(0, 0), u=(None, 0), v=(70, 0))]),
    ]


def test_selection_methods_pick_by_hand():
    runs = hand_runs()
    # training-domain validation: (h, step) means of u/v out: (0,1)=80 (0,2)=75 (1,1)=60 (1,2)=85 -> h1 step 2
    assert ms.training_domain_validation(runs, "t") == {"val_acc": 85, "hparams_seed": 1, "step": 2, "test_acc": 65}
    # oracle: last step's t out: h0 40, h1 50 -> h1 (step 2)
    assert ms.test_domain_oracle(runs, "t") == {"val_acc": 50, "hparams_seed": 1, "step": 2, "test_acc": 65}
    # leave-one-domain-out: (0,1)=(80+60)/2=70 (0,2)=65 (1,1)=72.5 (1,2)=70 -> h1 step 1
    assert ms.leave_one_domain_out(runs, "t") == {"val_acc": 72.5, "hparams_seed": 1, "step": 1, "test_acc": 70}
    picks = ms.selected(runs, "leave-one-domain-out")
    assert [(p["test_domain"], p["test_acc"]) for p in picks] == [("t", 70)]


def test_selection_ties_and_missing_pair_runs():
    runs = [_run(0, ("t",), [_ev(1, t=(10, 50), u=(None, 50))]), _run(1, ("t",), [_ev(1, t=(20, 50), u=(None, 50))])]
    assert ms.training_domain_validation(runs, "t")["hparams_seed"] == 0  # tie: the lower set
    assert ms.leave_one_domain_out(runs, "t") is None  # no pair runs: this method cannot score


def test_average_column_is_mean_over_trials_of_domain_means():
    from dgbench.results.leave_one_out import summary_rows

    runs = [_run(0, (t,), [_ev(1, **{t: (acc, 0), o: (None, 0)})], trial=trial)
            for trial, (a_acc, b_acc) in enumerate([(60, 80), (70, 100)])
            for t, o, acc in (("a", "b", a_acc), ("b", "a", b_acc))]
    rows = {(r["selection"], r["test_domain"]): r for r in summary_rows("ds", "p", runs)}
    avg = rows[("test-domain oracle", "average")]
    assert avg["acc"] == pytest.approx(77.5) and avg["n"] == 2
    assert avg["se"] == pytest.approx(np.std([70, 85], ddof=1) / np.sqrt(2))
    assert rows[("test-domain oracle", "a")]["acc"] == pytest.approx(65)


def test_leaderboard_round_trip_and_check(tmp_path):
    from dgbench.results.leave_one_out import check_leave_one_out, publish, read_leaderboard
    from dgbench.results.frame import records_to_frame

    recs = [{"kind": "leave-one-out", "key": f"k{i}", "dataset": "ds", "protocol": "p", "model": "m",
             "model_kwargs": {}, "dg_run": {k: v for k, v in r.items() if k not in ("model", "model_kwargs")}}
            for i, r in enumerate(hand_runs())]
    written = publish(records_to_frame(recs), tmp_path)
    lb = read_leaderboard(written[0])
    assert set(lb["selection"]) == set(ms.METHODS)
    assert "model selection: leave-one-domain-out" in written[1].read_text()
    ok = check_leave_one_out(lb, recs, {"all": 0.5})
    assert ok.diff["ok"].all() and ok.missing.empty
    recs[1]["dg_run"]["evaluations"][1]["acc"]["t"]["in"] = 64  # h1 step 2 test accuracy moves by 1
    assert not check_leave_one_out(lb, recs, {"all": 0.5}).diff["ok"].all()


def test_resume_gives_the_uninterrupted_numbers(tmp_path):
    from dgbench.builtin import digits_dg
    from dgbench.train.dg_algorithms import hparams
    from dgbench.train.domain_generalization import DGTrainConfig, train_run

    data = digits_dg.load()
    splits = {d: {k: v[:40] for k, v in s.items()} for d, s in data.splits(0).items()}
    hp = {**hparams("erm", 0, 0, True), "batch_size": 8}
    cfg = DGTrainConfig("small_resnet", "erm", hp, ("digits", "typeset-digits"), steps=4, checkpoint_freq=2)
    whole = train_run(cfg, data, splits, torch.device("cpu"))
    part = train_run(DGTrainConfig(**{**cfg.__dict__, "steps": 2}), data, splits, torch.device("cpu"), tmp_path)
    assert part.resumed_from is None
    resumed = train_run(cfg, data, splits, torch.device("cpu"), tmp_path)  # "killed" after step 2
    assert resumed.resumed_from == 2 and resumed.evaluations == whole.evaluations


def test_hparam_draws_seeded_and_set_zero_is_defaults():
    from dgbench.train.dg_algorithms import hparams

    assert hparams("erm", 0, 5, False) == {"lr": 5e-5, "batch_size": 32, "weight_decay": 0.0, "resnet_dropout": 0.0,
                                           "data_augmentation": True, "freeze_bn": True}
    a, b = hparams("erm", 1, 0, False), hparams("erm", 2, 0, False)
    assert a == hparams("erm", 1, 0, False) and a != b and a != hparams("erm", 1, 1, False)
    for h in range(1, 30):
        d = hparams("erm", h, 0, False)
        assert 1e-5 <= d["lr"] <= 10 ** -3.5 and 8 <= d["batch_size"] <= 45 and 1e-6 <= d["weight_decay"] <= 1e-2


def test_bad_input_is_one_line_naming_it(tmp_path):
    root = make_tree(tmp_path / "pacs", ("art_painting", "cartoon", "photo"))
    with pytest.raises(DgbenchError, match=r"domain folder .*sketch is missing"):
        load_folder_domains("pacs", root)
    odd = make_tree(tmp_path / "odd", ("a",))
    make_tree(odd, ("b",), classes=("dog", "cat"))
    with pytest.raises(DgbenchError, match=r"classes of .*b differ .*not in both: cat, horse"):
        load_folder_domains(GENERIC, odd)
    ok = make_tree(tmp_path / "ok", ("a", "b"))
    with pytest.raises(DgbenchError, match=r"--held-out z: not a domain of folder-domains \(its domains: a, b\)"):
        run_tiny(tmp_path, GENERIC, ok, held_out="z")
    with pytest.raises(DgbenchError, match=r"pacs: no data root; .*--data .*\$DGBENCH_PACS"):
        load_folder_domains("pacs", None)
    for exc in (pytest.raises(DgbenchError),):
        with exc as info:
            load_folder_domains("pacs", root)
        assert "\n" not in str(info.value)


def test_held_out_sets_singles_then_pairs():
    assert held_out_sets(("a", "b", "c"), ["a"], True) == [("a",), ("a", "b"), ("a", "c")]
    assert held_out_sets(("a", "b", "c"), ["a", "b", "c"], False) == [("a",), ("b",), ("c",)]


def test_mixstyle_is_one_class_mixing_only_while_training():
    from dgbench.models import create_model
    from dgbench.train.dg_algorithms import MixStyle, hparams

    torch.manual_seed(0)
    hp = {**hparams("mixstyle", 0, 0, True), "mixstyle_p": 1.0}
    algo = MixStyle(create_model("small_resnet", num_classes=10), hp)
    x, y = torch.randn(8, 3, 16, 16), torch.randint(0, 10, (8,))
    algo.eval()
    assert torch.equal(algo.predict(x), algo.network(x))  # a no-op at evaluation
    algo.train()
    torch.manual_seed(1)
    mixed = algo.predict(x)
    assert not torch.allclose(mixed, algo.network.eval()(x))
    algo.train()
    assert algo.update([(x[:4], y[:4]), (x[4:], y[4:])])["loss"] > 0


def test_a_sweep_over_models_gives_the_records_of_one_run(tmp_path, monkeypatch):
    """The experiment split by model over a sweep's cells (issue 23: use the sweep launcher) stores
    the same records as one run of all models; the kind's options travel in the grid's run table."""
    from dgbench.results.store import ResultStore
    from dgbench.sweep import GridSpec, Launch, sweep

    root = make_tree(tmp_path / "data", ("a", "b", "c"))
    specs = tmp_path / "specs"
    specs.mkdir()
    (specs / "loo.toml").write_text(
        '[protocols.loo-tiny]\nkind = "leave-one-out"\ndatasets = ["folder-domains"]\ntrials = 1\nhparam_sets = 1\n'
        'leave_one_out_runs = false\n[protocols.loo-tiny.recipes.folder-domains]\n'
        'steps = 2\ncheckpoint_freq = 1\neval_batch_size = 8\nimage_size = 16\n', encoding="utf-8")
    monkeypatch.setenv("DGBENCH_TRANSFORMS", str(specs))
    models = ["small_resnet", "small_resnet_ibn_a"]
    grid = GridSpec(models=models, protocols=["loo-tiny"], datasets=["folder-domains"],
                    options={"data": str(root), "pretrained": False, "device": "cpu", "options": {"held_out": "b"}})
    report = sweep(grid, tmp_path / "swept", Launch("local"))
    assert [s.state for s in report.states] == ["done", "done"]

    req = RunRequest(model=models, dataset="folder-domains", data=root, pretrained=False, results=tmp_path / "one",
                     progress=False, options={"held_out": "b"})
    with Runtime.start("cpu") as rt:
        from dgbench.protocols import get
        get("loo-tiny").run(req, rt)

    def numbers(results):
        return {r["key"]: (r["model"], r["test_domain"], r["dg_run"]["evaluations"]) for r in ResultStore(results).records()}

    swept, one = numbers(tmp_path / "swept"), numbers(tmp_path / "one")
    assert len(one) == 2 and swept == one


def test_sweep_files_take_a_kinds_options_and_dict_options_hash(tmp_path):
    from dgbench.sweep import load_toml

    path = tmp_path / "grid.toml"
    path.write_text('[grid]\nmodels = ["small_resnet", "small_resnet"]\nprotocols = ["appearance-lite"]\n'
                    '[run]\nmodel_kwargs = {num_classes = 10}\noptions = {held_out = "b"}\n', encoding="utf-8")
    grid, _ = load_toml(path)
    cells = grid.cells()  # a model named twice is one cell, dict-valued options and all
    assert len(cells) == 1 and dict(cells[0].options)["options"] == {"held_out": "b"}


def test_imagenet_sized_sets_augment_and_freeze_bn_as_domainbed_and_the_digits_do_not():
    from dgbench.train.dg_algorithms import hparams

    small = hparams("erm", 0, 0, True)
    assert set(small) == {"lr", "batch_size", "weight_decay", "resnet_dropout"}  # built-in records unchanged
    for h in (0, 3):
        large = hparams("erm", h, 1, False)
        assert large["data_augmentation"] is True and large["freeze_bn"] is True


def test_freeze_bn_keeps_running_statistics_and_leaves_instance_norm_alone():
    from dgbench.models import create_model
    from dgbench.train.dg_algorithms import ERM

    torch.manual_seed(0)
    net = create_model("small_resnet_ibn_a", pretrained=False, num_classes=10)
    algo = ERM(net, {"lr": 1e-2, "weight_decay": 0.0, "freeze_bn": True}).train()
    bns = [m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    ins = [m for m in net.modules() if isinstance(m, torch.nn.InstanceNorm2d)]
    assert bns and ins and not any(m.training for m in bns) and all(m.training for m in ins)
    before = [m.running_mean.clone() for m in bns]
    weight = bns[0].weight.detach().clone()
    x, y = torch.rand(8, 3, 16, 16), torch.randint(0, 10, (8,))
    algo.update([(x, y)])
    assert all(torch.equal(b, m.running_mean) for b, m in zip(before, bns))
    assert not torch.equal(weight, bns[0].weight)  # the affine weights still learn
    unfrozen = ERM(create_model("small_resnet_ibn_a", pretrained=False, num_classes=10),
                   {"lr": 1e-2, "weight_decay": 0.0}).train()
    assert all(m.training for m in unfrozen.modules() if isinstance(m, torch.nn.BatchNorm2d))


def test_augmentation_is_a_function_of_seed_domain_and_step():
    from dgbench.train.dg_augment import augment_batch

    images = torch.randint(0, 256, (6, 3, 20, 20), dtype=torch.uint8)
    a = augment_batch(images, 7, "photo", 3)
    assert a.shape == images.shape and a.dtype == torch.uint8
    assert torch.equal(a, augment_batch(images, 7, "photo", 3))
    assert not torch.equal(a, augment_batch(images, 7, "photo", 4))
    assert not torch.equal(a, augment_batch(images, 7, "sketch", 3))
    assert not torch.equal(a, images)


def test_resume_with_augmentation_and_frozen_bn_gives_the_uninterrupted_numbers(tmp_path):
    from dgbench.builtin import digits_dg
    from dgbench.train.dg_algorithms import hparams
    from dgbench.train.domain_generalization import DGTrainConfig, train_run

    data = digits_dg.load()
    splits = {d: {k: v[:40] for k, v in s.items()} for d, s in data.splits(0).items()}
    hp = {**hparams("erm", 0, 0, True), "batch_size": 8, "data_augmentation": True, "freeze_bn": True}
    cfg = DGTrainConfig("small_resnet", "erm", hp, ("digits", "typeset-digits"), steps=4, checkpoint_freq=2)
    whole = train_run(cfg, data, splits, torch.device("cpu"))
    train_run(DGTrainConfig(**{**cfg.__dict__, "steps": 2}), data, splits, torch.device("cpu"), tmp_path)
    resumed = train_run(cfg, data, splits, torch.device("cpu"), tmp_path)
    assert resumed.resumed_from == 2 and resumed.evaluations == whole.evaluations
    plain = train_run(DGTrainConfig(**{**cfg.__dict__, "hparams": {**hp, "data_augmentation": False}}), data, splits,
                      torch.device("cpu"))
    assert plain.evaluations != whole.evaluations  # the augmentation does act

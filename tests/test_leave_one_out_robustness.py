"""The leave-one-out code's edges (issue 23 review): CUDA determinism env, resume files, option
zeros, class counts, corrupt images, the cached minibatch order, kill-safe state, model globs."""
from __future__ import annotations

import hashlib

import pytest
import torch

from dgbench.data.domain_folders import DOMAIN_SETS, GENERIC, load_folder_domains
from dgbench.errors import CorruptImageError, DgbenchError
from dgbench.protocols.base import RunRequest
from dgbench.train import classification

from test_leave_one_out import make_tree, run_tiny, tiny_protocol


def test_deterministic_sets_the_cublas_workspace_only_when_unset(monkeypatch):
    env = classification.CUBLAS_ENV
    monkeypatch.setenv(env, "placeholder")  # so that teardown restores the original environment
    monkeypatch.delenv(env)
    with classification.deterministic(0, 1):
        pass
    assert classification.os.environ[env] == ":4096:8"
    monkeypatch.setenv(env, ":16:8")  # the user's own choice is kept
    with classification.deterministic(0, 1):
        pass
    assert classification.os.environ[env] == ":16:8"


def test_deterministic_after_cuda_started_without_the_workspace_is_one_line(monkeypatch):
    env = classification.CUBLAS_ENV
    monkeypatch.setenv(env, "placeholder")
    monkeypatch.delenv(env)
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    with pytest.raises(DgbenchError, match=r"export CUBLAS_WORKSPACE_CONFIG=:4096:8") as info:
        with classification.deterministic(0, 1):
            pass
    assert "\n" not in str(info.value)
    assert env not in classification.os.environ  # too late to set: cuBLAS has read it already


def _tiny_run(steps):
    from dgbench.builtin import digits_dg
    from dgbench.train.dg_algorithms import hparams
    from dgbench.train.domain_generalization import DGTrainConfig

    data = digits_dg.load()
    splits = {d: {k: v[:24] for k, v in s.items()} for d, s in data.splits(0).items()}
    hp = {**hparams("erm", 0, 0, True), "batch_size": 4}
    return DGTrainConfig("small_resnet", "erm", hp, ("digits", "typeset-digits"), steps=steps, checkpoint_freq=1), data, splits


def test_a_damaged_state_file_is_one_line_naming_it(tmp_path):
    from dgbench.train.domain_generalization import STATE_FILE, train_run

    cfg, data, splits = _tiny_run(1)
    (tmp_path / STATE_FILE).write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(DgbenchError, match=rf"{tmp_path / STATE_FILE}") as info:
        train_run(cfg, data, splits, torch.device("cpu"), tmp_path)
    assert "\n" not in str(info.value)


def test_the_state_file_keeps_every_rng_and_loads_weights_only(tmp_path):
    from dgbench.train.domain_generalization import STATE_FILE, train_run

    cfg, data, splits = _tiny_run(1)
    train_run(cfg, data, splits, torch.device("cpu"), tmp_path)
    saved = torch.load(tmp_path / STATE_FILE, weights_only=True)
    assert set(saved["rng"]) >= {"torch", "python"}  # and "cuda" where CUDA is available
    assert ("cuda" in saved["rng"]) == torch.cuda.is_available()


@pytest.mark.parametrize("option", ["trials", "hparam_sets"])
def test_a_zero_count_is_refused_not_replaced_by_the_specs(option):
    req = RunRequest(model="small_resnet", dataset=GENERIC, options={option: 0})
    with pytest.raises(DgbenchError, match=rf"--{option.replace('_', '-')} 0: expected a positive integer"):
        tiny_protocol(GENERIC).settings(req)
    assert tiny_protocol(GENERIC).settings(RunRequest(model="m", options={option: None}))[option] == 1


def test_cli_help_says_what_hparam_sets_counts():
    import inspect

    from dgbench.cli import run

    text = inspect.getsource(run)
    assert "0 = defaults" not in text and "set 0 is the defaults" in text


def test_a_named_set_with_the_wrong_class_count_is_one_line(tmp_path):
    root = make_tree(tmp_path / "pacs", DOMAIN_SETS["pacs"].domains)  # 2 classes, PACS has 7
    with pytest.raises(DgbenchError, match=rf"pacs: {tmp_path / 'pacs'} has 2 class folders per domain, expected 7"):
        load_folder_domains("pacs", root)
    assert load_folder_domains(GENERIC, root).classes == ("dog", "horse")  # a user's tree has its own count


def test_a_corrupt_image_is_one_line_naming_the_file(tmp_path):
    root = make_tree(tmp_path / "data", ("a", "b"))
    bad = root / "b" / "horse" / "1.jpg"
    bad.write_bytes(b"\xff\xd8 not a jpeg")
    data = load_folder_domains(GENERIC, root, size=8)
    i = data.keys["b"].index("horse/1.jpg")
    assert data.load("b", [i - 1]).shape == (1, 3, 8, 8)
    with pytest.raises(CorruptImageError, match=rf"{bad}: cannot decode image") as info:
        data.load("b", [i])
    assert "\n" not in str(info.value)


def _uncached_batch(pool, batch, seed, domain, step):
    """The rule before caching: every step draws its epoch's permutation afresh."""
    n, out, pos = len(pool), [], step * batch
    while len(out) < batch:
        epoch, offset = divmod(pos, n)
        seed_e = int.from_bytes(hashlib.sha256(f"{seed}/{domain}/{epoch}".encode()).digest()[:8], "little")
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed_e)).tolist()
        take = perm[offset: offset + batch - len(out)]
        out += [pool[i] for i in take]
        pos += len(take)
    return out


def test_cached_minibatches_are_the_uncached_rules():
    from dgbench.train.domain_generalization import batch_indices, epoch_permutation

    pool = list(range(100, 137))  # 37: batches straddle epochs
    epoch_permutation.cache_clear()
    for step in range(30):
        for batch in (5, 40):  # 40 > the pool: one batch spans two epochs
            assert batch_indices(pool, batch, 7, "x", step) == _uncached_batch(pool, batch, 7, "x", step)
    assert epoch_permutation.cache_info().hits > 0


def test_normalize_is_bit_identical_to_the_trainers_former_rule():
    from dgbench.shifts import normalize

    u = torch.randint(0, 256, (4, 3, 5, 5), dtype=torch.uint8)
    mean, std = (0.3058,) * 3, (0.3762,) * 3
    old = (u.float() / 255.0 - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    assert torch.equal(normalize(u, mean, std), old)


def test_a_kill_before_the_record_is_stored_resumes_from_the_finished_state(tmp_path, monkeypatch):
    from dgbench.results.store import ResultStore

    root = make_tree(tmp_path / "data", ("a", "b"))

    def killed(self, records):
        raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(ResultStore, "append", killed)
        with pytest.raises(KeyboardInterrupt):
            run_tiny(tmp_path, GENERIC, root, held_out="a")
    states = list((tmp_path / "res" / "leave-one-out-runs").rglob("state.pt"))
    assert len(states) == 1  # the finished training survived the kill
    summary = run_tiny(tmp_path, GENERIC, root, held_out="a")
    assert summary.computed == 1 and summary.records[0]["resumed_from"] == 2  # not trained again
    assert not states[0].exists()  # stored now: the state goes


def test_pretrained_runs_are_keyed_by_their_initial_weights_digest():
    from dgbench.models.registry import model_info
    from dgbench.protocols.leave_one_out import initial_weights_id

    for name in ("resnet50", "resnet50_ibn_a"):
        cfg = model_info(name).pretrained_cfg
        assert initial_weights_id(name) == (cfg.sha256 or cfg.sha256_prefix) and initial_weights_id(name)
    assert initial_weights_id("resnet50") == "0676ba61"  # torchvision's resnet50-0676ba61.pth


def test_model_globs_resolve_as_elsewhere_and_all_keeps_its_meaning():
    from dgbench.protocols.leave_one_out import ZOO_MODELS, model_names

    assert {"resnet50_ibn_a", "resnet50_ibn_b"} <= set(model_names("resnet50_ibn_*", False, []))
    assert model_names("ibn_a,resnet18,ibn_a", False, []) == ["resnet50_ibn_a", "resnet18"]
    assert model_names("small_resnet_ibn_[ab]", True, []) == ["small_resnet_ibn_a", "small_resnet_ibn_b"]
    assert model_names("ibn_a", True, []) == ["small_resnet_ibn_a"]
    assert model_names("all", False, []) == list(ZOO_MODELS)
    assert model_names("all", True, ["baseline", "ibn_a"]) == ["small_resnet", "small_resnet_ibn_a"]
    with pytest.raises(DgbenchError, match="registry models only"):
        model_names("pkg.mod:fn", False, [])

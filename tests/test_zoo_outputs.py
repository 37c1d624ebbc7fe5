"""Forward outputs of the deep zoo models against stored reference logits.

The key lists (test_models_compat) say the authors' checkpoints *load*; this says what the loaded
networks *compute* has not moved: weights and norm statistics set from each tensor's name, a
seeded input, and the logits compared with ``tests/data/zoo_logits.json`` (made by
``tests/data/make_zoo_logits.py``; regenerate only for an intended change of the numerics).
"""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch

DATA = Path(__file__).resolve().parent / "data"


def _maker():
    spec = importlib.util.spec_from_file_location("make_zoo_logits", DATA / "make_zoo_logits.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    return mod


MAKER = _maker()
REF = json.loads((DATA / "zoo_logits.json").read_text())


@pytest.fixture(autouse=True)
def _one_thread():
    """One intra-op thread, as the references were made: small inputs gain nothing from more, and
    on a busy CI machine the threads' waiting costs several times the arithmetic."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_reference_covers_the_deep_zoo() -> None:
    assert set(REF["logits"]) == set(MAKER.MODELS)
    assert REF["input"] == {"shape": list(MAKER.INPUT_SHAPE), "seed": MAKER.INPUT_SEED}
    # The references tell the variants apart (a reference that any model matches checks nothing).
    rows = {name: tuple(v[0]) for name, v in REF["logits"].items()}
    assert len(set(rows.values())) == len(rows)


@pytest.mark.parametrize("name", MAKER.MODELS)
def test_logits_match_the_reference(name: str) -> None:
    want = torch.tensor(REF["logits"][name])
    got = MAKER.logits(name)
    assert got.shape == want.shape == (MAKER.INPUT_SHAPE[0], MAKER.NUM_CLASSES)
    # Float32 through ~100 layers: the kernels' summation order (threads, CPU) moves the last
    # digits only; any change of the computation moves them by far more.
    tol = 1e-4 * float(want.abs().max())
    assert torch.allclose(got, want, rtol=1e-4, atol=tol), (name, (got - want).abs().max().item())


def test_a_different_computation_does_not_match() -> None:
    """The comparison can fail: moving IN (ibn_groups) or changing its share changes the logits."""
    from dgbench.models import create_model

    want = torch.tensor(REF["logits"]["resnet50_ibn_a"])
    for kwargs in ({"ibn_ratio": 0.25}, {"ibn_groups": (1, 2)}):
        with torch.device("meta"):
            m = create_model("resnet50_ibn_a", num_classes=MAKER.NUM_CLASSES, **kwargs)
        m = MAKER.fill_by_name(m.to_empty(device="cpu")).eval()
        with torch.no_grad():
            got = m(MAKER.seeded_input())
        assert not torch.allclose(got, want, rtol=1e-2, atol=1e-2), kwargs

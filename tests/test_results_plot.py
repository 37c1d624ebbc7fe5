"""`dgbench plot`: a PNG of the drops, with a severity curve when a sweep was run."""
from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from dgbench.cli import app
from dgbench.errors import DgbenchError
from dgbench.results.frame import records_to_frame
from dgbench.results.plot import _sweeps, plot_results
from dgbench.results.frame import summarize
from dgbench.results.store import ResultStore
from dgbench.results.tables import NoResultsError

from results_fixtures import appearance, cross, table1_records

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _sweep_records() -> list[dict]:
    recs = []
    for model, base in (("small_resnet", 6.0), ("small_resnet_ibn_a", 5.0)):
        recs.append(appearance(model, "origin", base, 1.0, dataset="digits"))
        for sev in (10, 50, 100):
            recs.append(appearance(model, f"rgb+{sev}", base + sev / 10 * (1 if "ibn" in model else 2),
                                   1.0, (base, 1.0), dataset="digits",
                                   spec={"kind": "add", "family": "rgb+", "severity": sev}))
    return recs


def test_sweeps_are_found_from_the_spec() -> None:
    s = summarize(records_to_frame(_sweep_records()))
    assert list(_sweeps(s[s["reference"] != ""])) == ["rgb+"]
    assert _sweeps(summarize(records_to_frame(table1_records()))) == {}  # single severities: no curve


def test_plot_writes_a_png(tmp_path: Path) -> None:
    seg = [cross("deeplab_resnet50", "a", "a", {"miou": 60.0, "pixel_acc": 90.0}),
           cross("deeplab_resnet50", "a", "b", {"miou": 30.0, "pixel_acc": 70.0}, {"miou": 60.0, "pixel_acc": 90.0})]
    out = plot_results(records_to_frame(table1_records() + _sweep_records() + seg), tmp_path / "sub" / "d.png")
    data = out.read_bytes()
    assert data.startswith(PNG_MAGIC) and len(data) > 10_000
    # Three panels (ImageNet bars, digits sweep curve, segmentation bars) make a tall image.
    height = int.from_bytes(data[20:24], "big")
    width = int.from_bytes(data[16:20], "big")
    assert height > width  # one panel would be wider than tall


def test_plot_refuses_what_it_cannot_draw(tmp_path: Path) -> None:
    with pytest.raises(NoResultsError):
        plot_results(records_to_frame([appearance("m", "origin", 1.0, 1.0)]), tmp_path / "x.png")
    with pytest.raises(DgbenchError, match="PNG"):
        plot_results(records_to_frame(table1_records()), tmp_path / "x.pdf")


def test_cli_plot(tmp_path: Path) -> None:
    ResultStore(tmp_path / "res").append(_sweep_records())
    out = tmp_path / "drops.png"
    res = CliRunner().invoke(app, ["plot", "--results", str(tmp_path / "res"), "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert out.read_bytes().startswith(PNG_MAGIC)

"""The leaderboard site, without a browser: byte-stable, self-contained, provenance from records."""
from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dgbench.cli import app
from dgbench.config import data_dir
from dgbench.errors import DgbenchError
from dgbench.results.leaderboard import publish
from dgbench.results.provenance import ProvenanceError
from dgbench.results.site import build_site, leaderboard_csvs
from dgbench.results.store import ResultStore

from results_fixtures import appearance, table1_records

SHA = "ab" * 32
FINGERPRINT = "cd" * 32


def builtin_site(out: Path) -> list[Path]:
    return build_site(leaderboard_csvs([data_dir("leaderboards")]), out)


def provenance_records() -> list[dict]:
    """Two models on imagenet (the paper has rows for both) with full provenance, and a variant
    measured with two seeds on two dates."""
    recs = [appearance(r["model"], r["shift"], r["metrics"]["top1_err"], r["metrics"]["top5_err"],
                       (r["metrics"]["top1_err"] - r["drop"].get("top1_err", 0.0),
                        r["metrics"]["top5_err"] - r["drop"].get("top5_err", 0.0)),
                       weights_sha256=SHA, dataset_fingerprint=FINGERPRINT, precision="fp32")
            for r in table1_records("imagenet")]
    for seed in (0, 1):
        rec = appearance("resnet50_ibn_a", "origin", 22.0 + seed, 6.0, seed=seed,
                         model_kwargs={"ibn_ratio": 0.25}, weights_sha256=SHA, precision="bf16")
        rec["started_at"] = f"2026-01-0{seed + 1}T00:00:00+00:00"
        recs.append(rec)
    return recs


def publish_html(tmp_path: Path, recs: list[dict], out: str = "site") -> Path:
    ResultStore(tmp_path / "res").append(recs)
    res = CliRunner().invoke(app, ["leaderboard", "publish", "--results", str(tmp_path / "res"),
                                   "--out", str(tmp_path / out), "--html"])
    assert res.exit_code == 0, res.output
    return tmp_path / out


def test_builtin_site_is_byte_stable_and_self_contained(tmp_path: Path) -> None:
    builtin_site(tmp_path / "one")
    builtin_site(tmp_path / "two")
    files = sorted(p.relative_to(tmp_path / "one") for p in (tmp_path / "one").rglob("*") if p.is_file())
    assert Path("index.html") in files and Path("digits-appearance.html") in files
    assert Path("paper/imagenet-appearance.csv") in files  # the index links the paper's numbers
    for rel in files:
        assert (tmp_path / "one" / rel).read_bytes() == (tmp_path / "two" / rel).read_bytes(), rel
    before = {p: p.stat().st_mtime_ns for p in (tmp_path / "one").rglob("*") if p.is_file()}
    builtin_site(tmp_path / "one")  # re-publishing the same leaderboards touches nothing
    assert {p: p.stat().st_mtime_ns for p in before} == before
    page = (tmp_path / "one" / "digits-appearance.html").read_text()
    # Offline: nothing is fetched at view time (no URL with a scheme, no external script).
    assert not re.search(r"""(src|href)="(https?:)?//""", page)
    assert "<script src" not in page and "fetch(" not in page
    assert page.count("data:image/png;base64,") == 2  # top-1 and top-5 drop plots
    # Real table markup, as many tables as the leaderboard publishes metrics.
    # and the error-consistency heat map from the shipped per-image outcomes.
    assert page.count('<table class="board"') == 3 and 'data-metric="kappa"' in page and '<th scope="col" class="num">' in page
    assert '<th scope="row"' in page and "<caption>" in page


@pytest.fixture(scope="module")
def builtin(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("builtin-site")
    builtin_site(out)
    return out


def _paged_csvs() -> list[Path]:
    """The built-in leaderboards: every one gets a page, whatever its kind."""
    return sorted(data_dir("leaderboards").glob("*.csv"))


def test_pages_show_every_csv_number(builtin: Path) -> None:
    assert len(_paged_csvs()) >= 6
    for csv_path in _paged_csvs():
        page = (builtin / f"{csv_path.stem}.html").read_text()
        rows = list(csv.DictReader(csv_path.open()))
        for r in rows:
            for col, text in r.items():
                if col.endswith(("_pct", "_nats")) and not col.endswith(("_se_pct", "_se_nats")) and text:
                    wanted = f'<span class="d">({text})</span>' if "_drop_" in col else f'<span class="v">{text}</span>'
                    assert wanted in page, (csv_path.name, col, text)
        assert f'<a href="{csv_path.name}">' in page


def test_builtin_pages_show_the_committed_provenance(builtin: Path) -> None:
    # The committed sidecars match their CSVs, so every measured row shows its runs.
    for sidecar in sorted(data_dir("leaderboards").glob("*.provenance.json")):
        page = (builtin / sidecar.name.replace(".provenance.json", ".html")).read_text()
        rows = re.findall(r'<tr data-source="dgbench".*?</tr>', page)
        assert rows and "does not cover" not in page
        for run in (r for entry in json.loads(sidecar.read_text())["rows"] for r in entry["runs"]):
            assert all(f"<code>{run[k]}</code>" in page for k in ("weights_sha256", "git_commit", "dgbench"))


def test_index_lists_every_leaderboard(builtin: Path) -> None:
    index = (builtin / "index.html").read_text()
    for csv_path in _paged_csvs():
        assert f'href="{csv_path.stem}.html"' in index and f'href="{csv_path.name}"' in index
    assert "top-1 error, top-5 error" in index  # metric titles come from the catalogue


def test_publish_html_shows_provenance_from_the_records(tmp_path: Path) -> None:
    site = publish_html(tmp_path, provenance_records())
    sidecar = json.loads((site / "imagenet-appearance.provenance.json").read_text())
    variant = next(r for r in sidecar["rows"] if r["row"]["model_kwargs"])
    assert [run["seed"] for run in variant["runs"]] == [0, 1]
    assert variant["values"] == {"n_runs": "2", "top1_err_pct": "22.50", "top5_err_pct": "6.00"}
    page = (site / "imagenet-appearance.html").read_text()
    for text in (SHA, FINGERPRINT, "fp32", "bf16", "<code>test</code>",  # dgbench version stamp
                 "2026-01-01T00:00:00+00:00 … 2026-01-02T00:00:00+00:00"):
        assert text in page, text
    # The paper's rows of the same models sit beside the measured ones, marked and linked.
    assert page.count('<tr class="paper" data-source="paper" data-model="resnet50">') == 2
    assert 'href="paper/imagenet-appearance.csv"' in page and (site / "paper" / "imagenet-appearance.csv").is_file()
    assert "22.50</span> <span class=\"se\">± 0.50</span> <span class=\"n\">n=2</span>" in page


def test_a_stale_sidecar_lends_no_provenance(tmp_path: Path) -> None:
    recs = provenance_records()
    site = publish_html(tmp_path, recs)
    # Re-publish other numbers without --html: the old sidecar no longer matches those rows.
    moved = [dict(r, metrics={**r["metrics"], "top1_err": r["metrics"]["top1_err"] + 1.0})
             if r["model"] == "resnet50_ibn_b" else r for r in recs]
    publish(moved, site)
    build_site(leaderboard_csvs([site]), site)
    page = (site / "imagenet-appearance.html").read_text()
    row = re.search(r'<tr data-source="dgbench" data-model="resnet50_ibn_b">.*?</tr>', page).group(0)
    assert "does not cover this row" in row and SHA not in row
    row = re.search(r'<tr data-source="dgbench" data-model="resnet50">.*?</tr>', page).group(0)
    assert SHA in row


def test_a_damaged_sidecar_is_a_one_line_error(tmp_path: Path) -> None:
    site = publish_html(tmp_path, provenance_records())
    (site / "imagenet-appearance.provenance.json").write_text('{"schema": 1, "rows": [{"row": {}}]}')
    with pytest.raises(ProvenanceError, match=r"imagenet-appearance\.provenance\.json: not a dgbench provenance"):
        build_site(leaderboard_csvs([site]), site)


def test_cli_site_builds_from_csvs_and_names_a_bad_source(tmp_path: Path) -> None:
    runner = CliRunner()
    res = runner.invoke(app, ["leaderboard", "site", str(data_dir("leaderboards") / "digits-appearance.csv"),
                              "--out", str(tmp_path / "s")])
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in (tmp_path / "s").glob("*.html")) == ["digits-appearance.html", "index.html"]
    res = runner.invoke(app, ["leaderboard", "site", str(tmp_path / "nope"), "--out", str(tmp_path / "t")])
    assert isinstance(res.exception, DgbenchError)  # main() prints it as one line and exits 2
    assert "nope: neither a leaderboard CSV nor a folder" in str(res.exception)


def test_site_names_the_missing_column_of_a_csv(tmp_path: Path) -> None:
    rows = list(csv.reader((data_dir("leaderboards") / "digits-appearance.csv").open()))
    drop = rows[0].index("n_runs")
    bad = tmp_path / "digits-appearance.csv"
    with bad.open("w", newline="") as f:
        csv.writer(f).writerows([r[:drop] + r[drop + 1:] for r in rows])
    res = CliRunner().invoke(app, ["leaderboard", "site", str(bad), "--out", str(tmp_path / "s")])
    assert isinstance(res.exception, DgbenchError), res.output
    msg = str(res.exception)
    assert "\n" not in msg and f"{bad}:1:" in msg
    assert "nearest is the appearance classification schema: missing column(s) n_runs" in msg


def test_site_and_publish_refuse_an_out_that_is_a_file(tmp_path: Path) -> None:
    afile = tmp_path / "afile"
    afile.write_text("keep me")
    res = CliRunner().invoke(app, ["leaderboard", "site", "--out", str(afile)])
    assert isinstance(res.exception, DgbenchError), res.output
    assert "\n" not in str(res.exception) and f"--out {afile}: a file is there" in str(res.exception)
    with pytest.raises(DgbenchError, match="a file is there"):
        publish(table1_records(), afile)
    assert afile.read_text() == "keep me"


def _headers(page: str, table: int = 0) -> list[str]:
    heads = re.findall(r"<thead><tr>(.*?)</tr></thead>", page)[table]
    return re.findall(r'data-type="\w+">([^<]*)<', heads)


def test_shift_columns_follow_the_protocol_not_the_alphabet(builtin: Path) -> None:
    page = (builtin / "digits-appearance.html").read_text()
    # transforms/protocols.toml: origin, rgb+50, r+50, std-x1.5, monet (cv-stylize on the digits)
    assert _headers(page, 0) == _headers(page, 1) == ["model", "origin", "rgb+50", "r+50", "std-x1.5", "cv-stylize"]
    lite = (builtin / "digits-corruptions-lite.html").read_text()
    assert _headers(lite, 1)[1:4] == ["origin", "gaussian_noise-3", "shot_noise-3"]  # as the protocol lists them


def test_finetune_and_divergence_leaderboards_have_pages(builtin: Path) -> None:
    index = (builtin / "index.html").read_text()
    for stem in ("digit-scenes-finetune", "digits-divergence"):
        assert f'href="{stem}.html"' in index
    ft = (builtin / "digit-scenes-finetune.html").read_text()
    assert _headers(ft) == ["model", "train → test", "source only", "10%", "20%", "30%", "100%"]
    assert ft.count("data:image/png;base64,") == 2  # mIoU and pixel accuracy against the fraction
    div = (builtin / "digits-divergence.html").read_text()
    assert _headers(div) == ["model", "stem", "layer1.0", "layer2.0", "layer3.0", "layer4.0"]
    assert div.count('<table class="board"') == 4  # one per domain pair
    assert '<span class="mark">IN</span>' in div and div.count("data:image/png;base64,") == 1
    assert "5 layers x 4 pairs" in index


def test_corruptions_page_leads_with_the_family_summary(builtin: Path) -> None:
    page = (builtin / "digits-corruptions-lite.html").read_text()
    assert _headers(page, 0) == ["model", "clean", "mean", "noise", "blur", "weather", "digital", "mCE"]
    assert page.index("Corruption summary") < page.index("top-1 error (%)")  # the full grid below
    rows = [r for r in csv.DictReader((data_dir("leaderboards") / "digits-corruptions-lite.csv").open())
            if r["model"] == "small_resnet"]
    err = {r["shift"]: float(r["top1_err_pct"]) for r in rows}
    noise = sum(err[f"{c}-3"] for c in ("gaussian_noise", "shot_noise", "impulse_noise")) / 3
    row = re.search(r'<tr data-source="dgbench" data-model="small_resnet">(.*?)</tr>', page).group(1)
    values = re.findall(r'<span class="v">([^<]*)</span>', row)
    assert values[0] == f"{err['origin']:.2f}" and values[2] == f"{noise:.2f}"
    assert 'title="no reference errors to normalize by"' in row  # mCE: one line on why it is missing


def test_the_shading_legend_only_where_cells_have_drops(builtin: Path) -> None:
    assert "Cells are shaded by their drop" in (builtin / "digits-appearance.html").read_text()
    for stem in ("digit-scenes-finetune", "digits-divergence"):
        assert "Cells are shaded by their drop" not in (builtin / f"{stem}.html").read_text()

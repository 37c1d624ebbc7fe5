"""Leaderboards: fixed schema, byte-identical publishing, validation errors naming the row."""
from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from dgbench.cli import app
from dgbench.results.leaderboard import (
    LeaderboardError,
    schemas,
    load_leaderboard,
    load_paper,
    paper_files,
    publish,
)
from dgbench.results.store import ResultStore

from results_fixtures import appearance, cross, table1_records

REPO = Path(__file__).resolve().parents[1]
HEADER = ("dataset,protocol,task,model,model_kwargs,shift,reference,n_runs,top1_err_pct,top5_err_pct,"
          "top1_err_drop_pct,top5_err_drop_pct,top1_err_se_pct,top5_err_se_pct,source,note")


def test_publish_writes_the_documented_schema_sorted_and_formatted(tmp_path: Path) -> None:
    recs = table1_records("digits") + [appearance("resnet50_ibn_a", "origin", 22.0, 6.0, seed=s,
                                                  dataset="digits", model_kwargs={"ibn_ratio": 0.25})
                                       for s in (0, 1)]
    paths = publish(recs, tmp_path)
    assert [p.name for p in paths] == ["digits-appearance.csv", "digits-appearance.md"]
    assert (tmp_path / "digits-appearance.csv").read_text() == "\n".join([
        HEADER,
        "digits,appearance,classification,resnet50,,origin,,1,24.30,7.10,,,,,dgbench,",
        "digits,appearance,classification,resnet50,,rgb+50,origin,1,28.20,9.60,3.90,2.50,,,dgbench,",
        "digits,appearance,classification,resnet50,,std-x1.5,origin,1,40.00,19.00,15.70,11.90,,,dgbench,",
        "digits,appearance,classification,resnet50_ibn_a,\"{\"\"ibn_ratio\"\":0.25}\",origin,,2,22.00,6.00,,,0.00,0.00,dgbench,",
        "digits,appearance,classification,resnet50_ibn_b,,origin,,1,23.60,6.90,,,,,dgbench,",
        "digits,appearance,classification,resnet50_ibn_b,,rgb+50,origin,1,23.80,7.00,0.20,0.10,,,dgbench,",
        "digits,appearance,classification,resnet50_ibn_b,,std-x1.5,origin,1,23.60,6.90,0.00,0.00,,,dgbench,",
    ]) + "\n"
    md = (tmp_path / "digits-appearance.md").read_text()
    assert "| resnet50_ibn_a (ibn_ratio=0.25) | 22.00 ± 0.00 n=2 |" in md and "top-5 error" in md


def test_publish_is_byte_identical_when_run_twice(tmp_path: Path) -> None:
    recs = table1_records() + [cross("deeplab_resnet50", "a", "a", {"miou": 60.0, "pixel_acc": 90.0}),
                               cross("deeplab_resnet50", "a", "b", {"miou": 30.123, "pixel_acc": 70.0},
                                     {"miou": 60.0, "pixel_acc": 90.0})]
    first = {p: p.read_bytes() for p in publish(recs, tmp_path / "one")}
    # Same results, stored in another order: same bytes.
    second = {p: p.read_bytes() for p in publish(list(reversed(recs)), tmp_path / "two")}
    assert [p.name for p in first] == [p.name for p in second] == [
        "cityscapes-gta5-cross-domain.csv", "cityscapes-gta5-cross-domain.md",
        "imagenet-appearance.csv", "imagenet-appearance.md"]
    assert list(first.values()) == list(second.values())
    again = {p: p.read_bytes() for p in publish(recs, tmp_path / "one")}
    assert again == first
    seg = load_leaderboard(tmp_path / "one" / "cityscapes-gta5-cross-domain.csv")
    assert list(seg.columns[:-1]) == schemas()[("cross-domain", "segmentation")]
    assert seg["miou_drop_pct"].tolist()[1] == 29.88  # in-domain minus cross-domain, positive


def test_cli_publish(tmp_path: Path) -> None:
    ResultStore(tmp_path / "res").append(table1_records("digits"))
    res = CliRunner().invoke(app, ["leaderboard", "publish", "--results", str(tmp_path / "res"),
                                   "--out", str(tmp_path / "lb")])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "lb" / "digits-appearance.csv").is_file()


GOOD = "digits,appearance,classification,m,,rgb+50,origin,1,28.20,9.60,3.90,2.50,,,dgbench,"


@pytest.mark.parametrize("line, message", [
    (GOOD.replace("28.20", "abc"), "column 'top1_err_pct': 'abc' is not a number"),
    (GOOD.replace("28.20", "0.282e3"), "is not a percentage in [0, 100]"),
    (GOOD.replace(",3.90,", ",,"), "column 'top1_err_drop_pct': empty, but the row has a reference"),
    (GOOD.replace(",1,28.20", ",0,28.20"), "column 'n_runs': '0' is not a positive integer"),
    (GOOD.replace(",1,28.20", ",,28.20"), "column 'n_runs': empty"),
    (GOOD + ",extra", "17 fields, the header has 16"),
    (GOOD.replace("2.50,,", "2.50,-0.1,"), "column 'top1_err_se_pct': -0.1 is not a percentage"),
    (GOOD.replace("classification,m,,", "classification,m,\"[1]\","), "column 'model_kwargs'"),
    (GOOD.replace(",m,", ",,"), "column 'model': empty"),
    (GOOD.replace("classification", "segmentation"), "column 'task': 'segmentation' in a classification"),
    (GOOD.replace(",origin,", ",,"), "column 'top1_err_drop_pct': a drop on a row without a reference"),
])
def test_validation_names_file_line_and_column(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "digits-appearance.csv"
    path.write_text("\n".join([HEADER, GOOD.replace("rgb+50", "r+50"), line]) + "\n")
    with pytest.raises(LeaderboardError) as exc:
        load_leaderboard(path)
    assert f"{path}:3:" in str(exc.value) and message in str(exc.value)


def test_duplicate_key_names_both_lines(tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    path.write_text("\n".join([HEADER, GOOD, GOOD.replace("28.20", "28.30")]) + "\n")
    with pytest.raises(LeaderboardError, match=r"x\.csv:3: duplicate row, same key as line 2"):
        load_leaderboard(path)


def test_header_must_be_a_schema(tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    path.write_text(HEADER.replace("top1_err_pct", "top1_err") + "\n" + GOOD + "\n")
    with pytest.raises(LeaderboardError, match=r"x\.csv:1: header matches no leaderboard schema; nearest is the "
                       r"appearance classification schema: missing column\(s\) top1_err_pct; unexpected "
                       r"column\(s\) top1_err \("):
        load_leaderboard(path)


def test_paper_numbers_are_valid_data_with_source_paper() -> None:
    assert {p.name for p in paper_files()} >= {"imagenet-appearance.csv", "imagenet-classification.csv",
                                               "cityscapes-gta5-cross-domain.csv"}
    paper = load_paper()
    assert set(paper["source"]) == {"paper"}
    ibn_b = paper[(paper["model"] == "resnet50_ibn_b") & (paper["protocol"] == "appearance")]
    std = ibn_b[ibn_b["shift"] == "std-x1.5"].iloc[0]
    assert (std["top1_err"], std["top1_err_drop"], std["top5_err_drop"]) == (23.64, 0.0, 0.0)
    assert len(paper[paper["protocol"] == "appearance"]) == 3 * 5 + 4 * 2  # Table 1 + Table 3's rest
    seg = paper[paper["protocol"] == "cross-domain"]
    gc = seg[(seg["model"] == "deeplab_resnet50_ibn_b") & (seg["train_domain"] == "gta5")
             & (seg["test_domain"] == "cityscapes")].iloc[0]
    assert (gc["miou"], gc["pixel_acc"]) == (29.6, 66.8)


def test_paper_folder_ships_in_the_wheel(built_wheel: Path) -> None:
    """Every paper CSV is inside the built wheel, byte for byte (the `--with-paper` join reads them)."""
    import zipfile

    paper = sorted((REPO / "leaderboards" / "paper").glob("*.csv"))
    assert paper
    with zipfile.ZipFile(built_wheel) as zf:
        for f in paper:
            assert zf.read(f"dgbench/leaderboards/paper/{f.name}") == f.read_bytes(), f.name


def test_unreadable_files_are_named(tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    path.write_bytes(HEADER.encode() + b"\n\xff\xfe\n")
    with pytest.raises(LeaderboardError, match=r"x\.csv: not UTF-8"):
        load_leaderboard(path)
    path.write_bytes(b"\xef\xbb\xbf" + (HEADER + "\n" + GOOD + "\n").encode())  # a spreadsheet's BOM
    assert len(load_leaderboard(path)) == 1


def test_a_cross_domain_pair_publishes_one_leaderboard(tmp_path: Path) -> None:
    real, synth = {"top1_acc": 99.0, "top1_err": 1.0}, {"top1_acc": 99.5, "top1_err": 0.5}
    recs = [cross("m", "digits", "digits", real, task="classification", dataset="digits"),
            cross("m", "digits", "typeset-digits", {"top1_acc": 66.0, "top1_err": 34.0}, real,
                  task="classification", dataset="typeset-digits")]
    paths = publish(recs, tmp_path)
    assert [p.name for p in paths] == ["digits-typeset-digits-cross-domain.csv", "digits-typeset-digits-cross-domain.md"]
    lb = load_leaderboard(paths[0])
    assert list(lb["dataset"]) == ["digits-typeset-digits"] * 2
    assert lb["top1_acc_drop_pct"].iloc[1] == 33.0  # in-domain 99 minus cross 66

"""``dgbench doctor`` lists every data root's variable, set or not (natural shifts, cue conflict, DG sets)."""
from __future__ import annotations

import json

from typer.testing import CliRunner

from dgbench.cli import app
from dgbench.config import ENV_VARS


def test_doctor_reports_each_data_root_variable(tmp_path, monkeypatch):
    for var in ENV_VARS.values():
        monkeypatch.delenv(var, raising=False)
    (tmp_path / "cue").mkdir()
    monkeypatch.setenv("DGBENCH_CUE_CONFLICT", str(tmp_path / "cue"))
    monkeypatch.setenv("DGBENCH_PACS", str(tmp_path / "no-such-folder"))
    out = CliRunner().invoke(app, ["doctor", "--format", "json", "--results", str(tmp_path / "res")])
    assert out.exit_code == 0, out.output
    rows = {r["what"]: r for r in json.loads(out.stdout)}
    assert rows["cue-conflict"]["status"] == "ok" and str(tmp_path / "cue") in rows["cue-conflict"]["where"]
    assert rows["pacs"]["status"] == "error" and "DGBENCH_PACS" in rows["pacs"]["details"]
    for name in ("imagenet-v2", "imagenet-sketch", "imagenet-r", "imagenet-a", "objectnet", "vlcs", "domainnet"):
        assert rows[name]["status"] == "not configured" and ENV_VARS[name] in rows[name]["where"]

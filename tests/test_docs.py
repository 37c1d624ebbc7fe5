"""The README and the docs site (docs/, mkdocs.yml): short, linked, and every command they show parses.

Each `dgbench ...` command of a ```bash block in README.md or docs/*.md is parsed by the real CLI
(the subcommand exists, each option exists and takes the value given); the cheap read-only ones
also run. Links are checked as the site and GitHub resolve them: relative to the file, anchors
included (slugs as Python-Markdown's toc extension makes them, which mkdocs uses).
"""
from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import unicodedata
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from dgbench.cli import app

try:  # Python 3.11+
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - 3.10
    import tomli as tomllib  # type: ignore[no-redef]

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
DOCS = REPO / "docs"
PAGES = sorted(DOCS.glob("*.md"))
MARKDOWN = [README, *PAGES]
README_MAX_LINES = 250

# The README's first lines, word for word: install + the built-in benchmark, then the tests.
SETUP_COMMANDS = (
    'pip install torch==2.14.1 torchvision==0.29.1 && pip install -e ".[test]" && pip install '
    '--no-deps "imagecorruptions-imaug>=1.1.5,<1.2" && dgbench run --model all --protocol appearance',
    "python -m pytest -q",
)
# Protocol kinds whose page is named differently from the kind; every other kind K has docs/K.md.
KIND_PAGES: dict[str, str] = {}

_FENCE = re.compile(r"^```([\w-]*)[^\n]*\n(.*?)^```[ \t]*$", re.M | re.S)
_LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
_HEADING = re.compile(r"^#{1,6}\s+(.*?)\s*#*\s*$", re.M)


def rel(path: Path) -> str:
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)


def code_blocks(path: Path, langs: set[str]) -> list[tuple[int, str]]:
    """(first line number, text) of each fenced block whose language is one of ``langs``."""
    text = path.read_text()
    return [(text.count("\n", 0, m.start(2)) + 1, m.group(2))
            for m in _FENCE.finditer(text) if m.group(1) in langs]


def _segments(line: str) -> list[list[str]]:
    """A shell line as its simple commands (split at && || | ;), comments dropped, quotes removed."""
    lex = shlex.shlex(line, posix=True, punctuation_chars=True)
    lex.whitespace_split = True
    segments: list[list[str]] = [[]]
    for token in lex:
        if token and set(token) <= set("&|;()<>"):
            segments.append([])
        else:
            segments[-1].append(token)
    return [s for s in segments if s]


def shown_commands(path: Path) -> list[tuple[str, list[str]]]:
    """Every ``dgbench ...`` command of the file's bash blocks: (file:line, arguments after dgbench)."""
    found = []
    for start, block in code_blocks(path, {"bash", "sh", "shell", "console"}):
        logical, first = "", None
        for offset, raw in enumerate(block.splitlines()):
            first = start + offset if first is None else first
            logical += raw.rstrip()
            if logical.endswith("\\"):  # a continued line
                logical = logical[:-1] + " "
                continue
            for words in _segments(logical):
                while words and re.fullmatch(r"[A-Za-z_]\w*=.*", words[0]):  # VAR=value prefix
                    words = words[1:]
                if words and words[0] == "dgbench":
                    found.append((f"{rel(path)}:{first}", words[1:]))
            logical, first = "", None
    return found


def parse_error(args: list[str]) -> str | None:
    """None when ``dgbench ARGS`` parses (subcommand, options, values); else why not."""
    command = typer.main.get_command(app)
    words = list(args)
    path = ["dgbench"]
    while hasattr(command, "commands"):  # a group: the next word names a subcommand
        if not words:
            return f"`{' '.join(path)}` needs a subcommand"
        name = words.pop(0)
        if name not in command.commands:
            return f"`{' '.join(path)}` has no subcommand {name!r} (it has {sorted(command.commands)})"
        command, path = command.commands[name], [*path, name]
    try:
        command.make_context(" ".join(path), words)
    except typer.TyperException as exc:
        return f"`{' '.join(path)}`: {exc.format_message()}"
    return None


ALL_COMMANDS = [c for path in MARKDOWN for c in shown_commands(path)]


def test_docs_show_commands_to_check() -> None:
    # The command check below is only worth something if it finds the commands.
    assert len(ALL_COMMANDS) >= 40, ALL_COMMANDS
    where = {w.split(":")[0] for w, _ in ALL_COMMANDS}
    assert {"README.md", "docs/appearance.md", "docs/divergence.md", "docs/finetune.md"} <= where


@pytest.mark.parametrize(("where", "args"), ALL_COMMANDS, ids=[w for w, _ in ALL_COMMANDS])
def test_shown_command_parses(where: str, args: list[str]) -> None:
    error = parse_error(args)
    assert error is None, f"{where}: dgbench {shlex.join(args)}\n  {error}"


def test_command_check_catches_bad_commands() -> None:
    assert parse_error(["run", "--model", "ibn_a"]) is None
    assert "No such option" in parse_error(["run", "--modle", "ibn_a"])
    assert "no subcommand 'runn'" in parse_error(["runn"])
    assert "publishh" in parse_error(["leaderboard", "publishh"])
    assert parse_error(["run", "--limit", "many"]) is not None  # a value of the wrong type
    assert parse_error(["run", "--precision", "fp64"]) is not None  # not one of the choices
    assert parse_error(["run", "--model"]) is not None  # an option without its value


def test_command_extraction_follows_the_shell(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "```bash\n"
        "pip install x && dgbench run --model all   # a comment --not-an-option\n"
        "dgbench run --model ibn_b --protocol divergence \\\n"
        "    --data /d   # continued\n"
        "X=1 Y=2 dgbench table --protocol 'cross-domain' | head\n"
        "python -m pytest\n"
        "```\n\n```text\ndgbench not a command\n```\n")
    assert [args for _, args in shown_commands(page)] == [
        ["run", "--model", "all"],
        ["run", "--model", "ibn_b", "--protocol", "divergence", "--data", "/d"],
        ["table", "--protocol", "cross-domain"],
    ]
    assert [w.split(":")[1] for w, _ in shown_commands(page)] == ["2", "3", "5"]


def runs_for_real(args: list[str]) -> bool:
    """Whether a shown command is cheap: read-only and quick on an empty results folder, offline."""
    if args[0] in {"protocols", "doctor"}:
        return True
    if args[0] == "models":  # one family; the whole zoo's GFLOPs take a minute on a fresh cache
        return len(args) > 1 and not args[1].startswith("-")
    if args[0] == "table":  # the paper's own tables show on an empty store
        return "--with-paper" in args
    return False


CHEAP_COMMANDS = [(w, a) for w, a in ALL_COMMANDS if a and runs_for_real(a)]


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("dgbench-cache")


@pytest.mark.parametrize(("where", "args"), CHEAP_COMMANDS, ids=[w for w, _ in CHEAP_COMMANDS])
def test_cheap_shown_command_runs(where: str, args: list[str], tmp_path: Path, cache_dir: Path,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DGBENCH_RESULTS", str(tmp_path / "results"))
    monkeypatch.setenv("DGBENCH_CACHE", str(cache_dir))
    monkeypatch.setenv("DGBENCH_OFFLINE", "1")
    monkeypatch.setenv("COLUMNS", "200")
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, f"{where}: dgbench {shlex.join(args)}\n{result.output}"
    assert result.output.strip(), f"{where}: dgbench {shlex.join(args)} printed nothing"


def test_cheap_commands_are_run() -> None:
    # Each kind of cheap command is shown somewhere, so each really runs above.
    assert {a[0] for _, a in CHEAP_COMMANDS} == {"protocols", "doctor", "models", "table"}


def test_readme_is_a_front_page() -> None:
    lines = README.read_text().splitlines()
    assert len(lines) <= README_MAX_LINES, (
        f"README.md has {len(lines)} lines (at most {README_MAX_LINES}): move reference text to a "
        "page in docs/ and link it")
    first_block = code_blocks(README, {"bash"})[0]
    assert first_block[0] <= 4, "the README's first lines are its two set-up commands"
    assert tuple(first_block[1].splitlines()) == SETUP_COMMANDS
    # The site's home page starts with the same two commands.
    assert code_blocks(DOCS / "index.md", {"bash"})[0][1] == first_block[1]


def test_readme_table_is_the_published_leaderboard() -> None:
    # The README's built-in table quotes leaderboards/digits-appearance.csv cell for cell (top-1
    # error, drop), with the intervals computed from its shipped per-image outcomes: the error's
    # Wilson interval (scipy) and the drop's paired bootstrap (dgbench's, seeded) over the images.
    import csv
    import re

    import numpy as np
    from scipy import stats as sps

    from dgbench.metrics.stats import paired_bootstrap_diff
    from dgbench.results.leaderboard_outcomes import load_sidecar

    csv_path = REPO / "leaderboards" / "digits-appearance.csv"
    with open(csv_path, newline="") as f:
        published = {(r["model"], r["shift"]): r for r in csv.DictReader(f)}
    side = load_sidecar(csv_path)
    rows = [line.strip("|").split("|") for line in README.read_text().splitlines()
            if line.startswith("| small_resnet")]
    header = next(line for line in README.read_text().splitlines() if line.startswith("| model |"))
    shifts = [c.strip() for c in header.strip("|").split("|")[1:]]
    assert len(rows) == len({m for m, _ in published}) and shifts, "README shows every published model"
    num = r"(-?\d+\.\d+)"
    cell_re = re.compile(rf"{num} \[{num}, {num}\]( \({num} \[{num}, {num}\]\))?$")
    for model, *cells in ([c.strip() for c in row] for row in rows):
        for shift, cell in zip(shifts, cells, strict=True):
            r, got = published[(model, shift)], cell_re.match(cell)
            assert got, f"README.md: {model} {shift} shows {cell!r}, not 'err [lo, hi] (drop [lo, hi])'"
            evaluated, correct = side.correct((model, "", shift), 1)
            wrong, n = int((evaluated & ~correct).sum()), int(evaluated.sum())
            assert f"{100 * wrong / n:.2f}" == r["top1_err_pct"] == got[1], f"README.md: {model} {shift}"
            ci = sps.binomtest(wrong, n).proportion_ci(method="wilson")
            assert (got[2], got[3]) == (f"{100 * ci.low:.1f}", f"{100 * ci.high:.1f}"), f"README.md: {model} {shift}"
            assert (got[5] or "") == r["top1_err_drop_pct"], f"README.md: {model} {shift} drop"
            if got[5]:
                _, ref = side.correct((model, "", "origin"), 1)
                d = paired_bootstrap_diff(ref, correct, n_boot=10_000)
                assert (got[6], got[7]) == (f"{100 * d.lo:.1f}", f"{100 * d.hi:.1f}"), f"README.md: {model} {shift}"
                assert np.isclose(100 * d.diff, float(got[5]), atol=0.01)


def test_readme_compare_table_is_the_shipped_outcomes() -> None:
    # The README's `dgbench compare small_resnet small_resnet_ibn_b` table, recomputed from the
    # leaderboard's shipped per-image outcomes: errors, flips, exact McNemar (scipy), Holm, and
    # the paired bootstrap as `compare` draws it.
    import re

    from scipy import stats as sps

    from dgbench.metrics.stats import holm, paired_bootstrap_diff
    from dgbench.results.leaderboard_outcomes import load_sidecar
    from dgbench.results.paired import N_BOOT, fmt_p

    side = load_sidecar(REPO / "leaderboards" / "digits-appearance.csv")
    lines = [line for line in README.read_text().splitlines()
             if re.match(r"\| (origin|rgb\+50|r\+50|std-x1\.5|cv-stylize) \| ", line)]
    assert len(lines) == 5, "README shows the compare table's five conditions"
    rows, raw = [], []
    for line in lines:
        cond, *cells = [c.strip() for c in line.strip("|").split("|")]
        a, b = (side.correct((m, "", cond), 1)[1] for m in ("small_resnet", "small_resnet_ibn_b"))
        a_only, b_only = int((a & ~b).sum()), int((b & ~a).sum())
        raw.append(sps.binomtest(a_only, a_only + b_only, 0.5).pvalue)
        d = paired_bootstrap_diff(a, b, n_boot=N_BOOT)
        rows.append((cells, [f"{100 * (1 - a.mean()):.2f}", f"{100 * (1 - b.mean()):.2f}",
                             f"{100 * d.diff:+.2f} [{100 * d.lo:+.2f}, {100 * d.hi:+.2f}]", fmt_p(raw[-1]), None,
                             str(a_only), str(b_only)]))
    for (cells, want), p_holm in zip(rows, holm(raw)):
        want[4] = fmt_p(p_holm)
        assert cells == want


def slugify(heading: str) -> str:
    """A heading's anchor, as Python-Markdown's toc extension (mkdocs) makes it."""
    text = re.sub(r"[`*_]|\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # markup: the text only
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    text = re.sub(r"[^\w\s-]", "", text).strip().lower()
    return re.sub(r"[-\s]+", "-", text)


def anchors(path: Path) -> set[str]:
    text = _FENCE.sub("", path.read_text())  # a '#' line in a code block is no heading
    return {slugify(h) for h in _HEADING.findall(text)}


def links(path: Path) -> list[str]:
    text = _FENCE.sub("", path.read_text())
    text = re.sub(r"`[^`\n]*`", "", text)  # nor is a [x](y) inside inline code a link
    return _LINK.findall(text)


def broken_links(path: Path) -> list[str]:
    bad = []
    for target in links(path):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto: ...
            continue
        file, _, anchor = target.partition("#")
        dest = (path.parent / file).resolve() if file else path
        if not dest.exists():
            bad.append(f"{target} (no file {rel(dest)})")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            bad.append(f"{target} (no heading with anchor #{anchor} in {rel(dest)})")
    return bad


@pytest.mark.parametrize("path", MARKDOWN, ids=rel)
def test_links_resolve(path: Path) -> None:
    assert not broken_links(path), f"{rel(path)}: broken links: {broken_links(path)}"


def test_link_check_catches_broken_links(tmp_path: Path) -> None:
    (tmp_path / "b.md").write_text("# Cross-domain (Table 6)\n\n## Built-in `digits` pair\n")
    page = tmp_path / "a.md"
    page.write_text("[ok](b.md#built-in-digits-pair) [ok](b.md#cross-domain-table-6) "
                    "[web](https://example.org/x) `[code](nowhere.md)`\n"
                    "[bad](missing.md) [bad anchor](b.md#built-in-pair) [self](#nothing)\n")
    assert [b.split(" ")[0] for b in broken_links(page)] == [
        "missing.md", "b.md#built-in-pair", "#nothing"]


def test_pages_named_by_the_code_exist() -> None:
    # Error messages and docstrings send the user to docs/<page>.md: those pages must exist.
    named = {(rel(path), page) for path in sorted((REPO / "dgbench").rglob("*.py"))
             for page in re.findall(r"docs/([\w-]+\.md)", path.read_text())}
    assert named, "the code names no docs page (the check would check nothing)"
    missing = sorted(f"{where} names docs/{page}" for where, page in named if not (DOCS / page).exists())
    assert not missing, missing


def test_every_protocol_kind_has_a_page_one_click_from_the_readme() -> None:
    from dgbench.protocols.base import known_kinds

    readme_links = {t.partition("#")[0] for t in links(README)}
    for kind in known_kinds():
        page = KIND_PAGES.get(kind, f"{kind}.md")
        assert (DOCS / page).exists(), f"protocol kind {kind!r} has no page docs/{page}"
        assert f"docs/{page}" in readme_links, f"README.md does not link docs/{page} ({kind!r})"
    assert "docs/corruptions.md" in readme_links  # the corruption protocols: kind appearance


def nav_pages() -> list[str]:
    """The pages listed in mkdocs.yml's nav (``- Title: page.md`` lines)."""
    text = (REPO / "mkdocs.yml").read_text()
    nav = text.split("\nnav:\n", 1)[1]
    return re.findall(r"^\s+- (?:[^:\n]+:\s+)?([\w./-]+\.md)\s*$", nav, re.M)


def test_every_page_is_in_the_nav_and_linked_from_the_readme() -> None:
    listed = nav_pages()
    assert sorted(listed) == sorted(p.name for p in PAGES), (
        "mkdocs.yml's nav and docs/*.md differ: add the new page to the nav (or remove a stale line)")
    readme_links = {t.partition("#")[0] for t in links(README)}
    unlinked = [p for p in listed if p != "index.md" and f"docs/{p}" not in readme_links]
    assert not unlinked, f"README.md links no docs page {unlinked}: add it to its Documentation list"


def test_python_and_toml_blocks_are_valid() -> None:
    import dgbench

    for path in MARKDOWN:
        for line, block in code_blocks(path, {"python"}):
            compile(block, f"{rel(path)}:{line}", "exec")
            for name in re.findall(r"\bdgbench\.([A-Za-z_]\w*)\b", block):
                assert hasattr(dgbench, name), f"{rel(path)}:{line}: dgbench has no {name!r}"
        for line, block in code_blocks(path, {"toml"}):
            tomllib.loads(block)


@pytest.mark.slow
def test_docs_site_builds_strict(tmp_path: Path) -> None:
    mkdocs = shutil.which("mkdocs", path=os.pathsep.join([str(Path(sys.executable).parent),
                                                          os.environ.get("PATH", "")]))
    if mkdocs is None:
        pytest.skip('mkdocs is not installed (pip install -e ".[docs]"); .ci/run builds the site')
    run = subprocess.run([mkdocs, "build", "--strict", "--site-dir", str(tmp_path / "site")],
                         cwd=REPO, capture_output=True, text=True, timeout=300,
                         env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert run.returncode == 0, run.stderr[-3000:]
    for page in PAGES:
        built = "index.html" if page.stem == "index" else f"{page.stem}/index.html"
        assert (tmp_path / "site" / built).exists(), built

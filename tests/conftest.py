"""Test-session isolation: nothing a test does touches the user's caches, results or data roots."""
from __future__ import annotations

import os
import tempfile

# One session-wide scratch cache (tests that need a fresh one set DGBENCH_CACHE themselves), and no
# data roots inherited from the developer's shell, so a test never reads a real dataset by accident.
_scratch = tempfile.mkdtemp(prefix="dgbench-tests-")
os.environ["DGBENCH_CACHE"] = os.path.join(_scratch, "cache")
os.environ["DGBENCH_RESULTS"] = os.path.join(_scratch, "results")
os.environ["TORCH_HOME"] = os.path.join(_scratch, "torch")
os.environ.setdefault("MPLBACKEND", "Agg")
for _var in ("DGBENCH_IMAGENET", "DGBENCH_CITYSCAPES", "DGBENCH_GTA5", "DGBENCH_OFFLINE", "DGBENCH_TRANSFORMS"):
    os.environ.pop(_var, None)


import subprocess  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def built_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """dgbench's wheel, built once per session from this checkout (offline: no build isolation)."""
    repo = Path(__file__).resolve().parents[1]
    wheel_dir = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(wheel_dir), str(repo)],
        check=True, capture_output=True,
    )
    (wheel,) = wheel_dir.glob("dgbench-*.whl")
    return wheel

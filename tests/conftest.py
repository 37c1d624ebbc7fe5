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

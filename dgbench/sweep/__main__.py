"""``python -m dgbench.sweep RESULTS CELLS.json``: a multi-gpu worker (or one torchrun rank) runs its cells."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from .cell import run_cells


def main(argv: list[str]) -> int:
    results, cells_file = argv[:2]
    cells = json.loads(Path(cells_file).read_text(encoding="utf-8"))
    run_cells(results, cells, job_id=os.environ.get("DGBENCH_SWEEP_WORKER"))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

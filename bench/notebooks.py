"""Per-notebook execution time of nbs/, as ratios to an empty notebook run the same way in the same process.

The empty notebook's time is the fixed cost of a run (kernel start, papermill, writing the output); the ratio says
how much each chapter adds to it. Run: `make bench` or `.venv/bin/python bench/notebooks.py`.
"""
import sys
import tempfile
import time
from pathlib import Path

import nbformat

from workbench.pipeline import params, run_notebook

ROOT = Path(__file__).resolve().parents[1]
SMOKE = {"smoke": True, "epochs": 1}


def timed(nb: Path, out: Path) -> float:
    declared = params(nb)
    start = time.perf_counter()
    run = run_notebook(nb, {k: v for k, v in SMOKE.items() if k in declared}, out_dir=out, html=False)
    if not run.ok:
        sys.exit(run.describe_error())
    return time.perf_counter() - start


def main():
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        empty = tmp / "empty.ipynb"
        nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("pass")])
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "python3", "language": "python"}
        nbformat.write(nb, empty)
        timed(empty, tmp / "warmup")  # imports and caches, paid once by any runner
        base = min(timed(empty, tmp / f"empty{i}") for i in range(3))
        print(f"{'notebook':<22}{'seconds':>9}{'x empty':>9}")
        print(f"{'(empty notebook)':<22}{base:>9.2f}{1:>9.2f}")
        total = 0.0
        for chapter in sorted((ROOT / "nbs").glob("*.ipynb")):
            seconds = timed(chapter, tmp / chapter.stem)
            total += seconds
            print(f"{chapter.name:<22}{seconds:>9.2f}{seconds / base:>9.2f}")
        print(f"{'all chapters, serial':<22}{total:>9.2f}{total / base:>9.2f}")


if __name__ == "__main__":
    main()

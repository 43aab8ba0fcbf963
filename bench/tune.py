"""Tuning: a search (TPE, with and without pruning) against a grid of the same budget, on a notebook with a known best.

The notebook "trains" for 6 epochs of 1 s each and records its score every epoch; the score peaks at lr = 0.01 and
width = 64 (the best possible is 1 - 0.5^6 = 0.984). Each search runs 16 trials, 2 at a time, through the `workbench`
command as a user types it:

- grid: `workbench sweep` over 4 learning rates x 4 widths;
- TPE without pruning, and TPE with the median pruner (same seed);
- TPE without pruning on 1 worker, for the speed-up of 2.

Printed: each search's best score, wall time, and the trials it took to come within 1% of its own best; then the wall
time pruning saves at the same best score (target >= 40%) and the speed-up of 2 workers (target >= 1.7x).
Run: `make bench` or `.venv/bin/python bench/tune.py`.
"""
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat
import optuna

from workbench.notebooks import make_notebook
from workbench.store import RunStore

WORKBENCH = Path(sys.executable).parent / "workbench"
SCORE = ("import math, time\nfrom workbench.runs import record\n"
         "for epoch in range(1, epochs + 1):\n"
         "    time.sleep(pause)\n"
         "    value = (1 - (math.log10(lr) + 2) ** 2 / 4 - ((width - 64) / 64) ** 2) * (1 - 0.5 ** epoch)\n"
         "    record('score', round(value, 6), step=epoch)\n"
         "record('score', round(value, 6))")


def timed(*args, env) -> float:
    start = time.perf_counter()
    out = subprocess.run([str(WORKBENCH), *map(str, args)], capture_output=True, text=True, env=env)
    if out.returncode != 0:
        sys.exit(f"workbench {' '.join(map(str, args))} failed:\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}")
    return time.perf_counter() - start


def within(values: list, best: float) -> int | None:
    "The trials it took to come within 1% of `best`."
    for i, v in enumerate(values, start=1):
        if v is not None and v >= best * 0.99:
            return i
    return None


def search(nb: Path, tmp: Path, name: str, env: dict, workers: int = 2, pruner: str = "none") -> tuple:
    seconds = timed("tune", nb, "-p", "lr=loguniform:1e-4:1", "-p", "width=int:8:128", "--metric", "score", "--trials", 16,
                    "--seed", 0, "--pruner", pruner, "--workers", workers, "--study", name, "-o", tmp / name, env=env)
    study = optuna.load_study(study_name=name, storage=f"sqlite:///{tmp / 'tune.db'}")
    values = [t.value for t in sorted(study.trials, key=lambda t: t.datetime_complete or t.datetime_start)]
    return study.best_value, seconds, values, sum(t.state.name == "PRUNED" for t in study.trials)


def main():
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        nb = tmp / "score.ipynb"
        nbformat.write(make_notebook(SCORE, params_cell="lr = 0.001\nwidth = 32\nepochs = 6\npause = 1.0"), nb)
        env = {**os.environ, "WORKBENCH_RUNS_DB": str(tmp / "runs.db")}
        lrs = ",".join(f"{10 ** e:.6g}" for e in (-4, -8 / 3, -4 / 3, 0))
        grid_seconds = timed("sweep", nb, "-p", f"lr={lrs}", "-p", "width=8,48,88,128", "--metric", "score", "-o", tmp / "grid", env=env)
        grid = RunStore(tmp / "runs.db").runs().sort_values("started")["value.score"].tolist()
        results = {"grid": (max(grid), grid_seconds, grid, 0)}
        results["TPE"] = search(nb, tmp, "tpe", env)
        results["TPE + pruning"] = search(nb, tmp, "pruned", env, pruner="median")
        results["TPE, 1 worker"] = search(nb, tmp, "one", env, workers=1)
        print("16 trials each, 6 epochs of 1 s; best possible score 0.984")
        for name, (best, seconds, values, pruned) in results.items():
            print(f"  {name:<14} best {best:.4f}  {seconds:5.1f} s  within 1% of its best after {within(values, best)} trials"
                  + (f"  ({pruned} pruned)" if pruned else ""))
        tpe, pruned, one = results["TPE"], results["TPE + pruning"], results["TPE, 1 worker"]
        print(f"  pruning saves {1 - pruned[1] / tpe[1]:.0%} of the wall time (target >= 40%), best {pruned[0]:.4f} vs {tpe[0]:.4f}")
        print(f"  2 workers: {one[1] / tpe[1]:.2f}x the speed of 1 (target >= 1.7x)")
        print(f"  search vs grid: best {tpe[0]:.4f} vs {results['grid'][0]:.4f}")


if __name__ == "__main__":
    main()

"""The console at 1,000 runs: every page's median and max over real HTTP, from a real `workbench ui`.

The store is filled through the store's own calls (`RunStore.start`, `record`, `finish`: what `workbench run` calls),
each run with an executed notebook on disk (parameters injected as papermill injects them), so the pages read what
they read in use: a 200-trial study, 8 sweeps of 50 points, 40 pipeline runs of 5 stages, 200 runs on their own.
Every run records 8 values and 2 histories of 20 steps; 3 model versions (aliases production and staging).
Pages: the runs page (all 1,000), one sweep, the study, a run, compare of 2 and of 50, the models and a model page.
Each page is fetched once (the first view, printed apart), then 10 times: median and max. Target: every page <= 1 s.
Run: `make bench` or `.venv/bin/python bench/console.py [--quick]` (--quick: 3 fetches a page).
"""
import json
import os
import random
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

import nbformat

from workbench.store import RunStore

BIN = Path(sys.executable).parent
CODE = ["import numpy as np\nimport pandas as pd", "lr = 0.1\ndepth = 3\nseed = 0\nlayers = 2\ndropout = 0.1",
        "rng = np.random.default_rng(seed)\nX = rng.normal(size=(1000, 8))\ny = X @ rng.normal(size=8) > 0",
        "from workbench.runs import record\nfor epoch in range(20):\n    record('loss', 1 / (epoch + 1), step=epoch)",
        "accuracy = float((y == (X[:, 0] > 0)).mean())\nrecord('accuracy', accuracy)", "print(f'{accuracy:.3f}')"]


def notebook(path: Path, params: dict, extra: str = ""):
    "An executed notebook as papermill leaves it: the injected parameters after the tagged cell, outputs on each cell."
    cells = [nbformat.v4.new_code_cell(c) for c in CODE]
    cells[1].metadata["tags"] = ["parameters"]
    injected = nbformat.v4.new_code_cell("\n".join(f"{k} = {v!r}" for k, v in params.items()))
    injected.metadata["tags"] = ["injected-parameters"]
    cells.insert(2, injected)
    if extra:
        cells.append(nbformat.v4.new_code_cell(extra))
    for i, cell in enumerate(cells):
        cell.outputs = [nbformat.v4.new_output("stream", text=f"cell {i} done\n" * 3)]
        cell.execution_count = i + 1
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nbformat.v4.new_notebook(cells=cells), str(path))


def add_run(store: RunStore, root: Path, run_id: str, name: str, params: dict, tag=None, started=0.0, extra="", fail=False, folder=None):
    "A finished run of notebook `name` with 48 values; its executed notebook in `folder` (what the pages call it), as the commands lay them out."
    out = root / (tag or "alone").replace(":", "-") / (folder or run_id) / f"{name}.ipynb"
    notebook(out, params, extra)
    store.start(run_id, f"/work/project/{name}.ipynb", {**params, "data": "/work/project/data/train.csv"}, pipeline=tag)
    rng = random.Random(run_id)
    history = [(name, round(base + rng.random() * 0.05, 4), step) for step in range(20)
               for name, base in (("loss", 1 / (step + 1)), ("accuracy_curve", 0.5 + step / 50))]
    values = [(n, round(rng.random(), 4) if k < 4 else 1000 + k, None) for k, n in enumerate(["accuracy", "f1", "auc", "rmse", "rows", "features"])]
    with sqlite3.connect(store.path) as db:  # 48 values a run in one transaction (store.record takes one each: minutes)
        db.executemany("INSERT INTO records (run_id, name, value, kind, at, step) VALUES (?, ?, ?, 'metric', ?, ?)",
                       [(run_id, n, json.dumps(v), started, s) for n, v, s in history + values])
        db.executemany("INSERT INTO latest (run_id, name, value, kind) VALUES (?, ?, ?, 'metric')",
                       [(run_id, n, json.dumps(v)) for n, v, _ in history[-2:] + values])
    store.finish(run_id, "failed" if fail else "ok", 2 + rng.random() * 30, error={"ename": "ValueError", "evalue": "bad"} if fail else None,
                 output=str(out))
    with sqlite3.connect(store.path) as db:  # spread the starts over a month, as real use does
        db.execute("UPDATE runs SET started = ?, finished = ? WHERE id = ?", (started, started + 30, run_id))


def fill(store: RunStore, root: Path) -> dict:
    "1,000 runs; the ids a page is asked about."
    rng, at, ids = random.Random(0), time.time() - 30 * 86400, {}
    for trial in range(200):
        at += 600
        add_run(store, root, f"tune-{trial:04d}", "train", {"lr": round(rng.uniform(1e-4, 0.3), 5), "depth": rng.randint(2, 12),
                "layers": rng.randint(1, 6), "dropout": round(rng.random() / 2, 3)}, f"tune:study:{trial}", at, fail=trial % 37 == 0,
                folder=f"trial-{trial}")
    for sweep in range(8):
        tag = f"20261101-0{sweep}0000-train-sweep-{sweep:06x}"
        for number in range(50):
            at += 300
            point = {"lr": [0.001, 0.01, 0.1, 0.3, 1.0][number % 5], "depth": 2 + number // 5}
            add_run(store, root, f"sweep{sweep}-{number:03d}", "train", point, tag, at, folder=",".join(f"{k}={v}" for k, v in point.items()))
        ids.setdefault("sweep", tag)
        ids.setdefault("fifty", [f"sweep{sweep}-{p:03d}" for p in range(50)])
    for pipe in range(40):
        tag = f"20261110-{pipe:02d}0000-demo-{pipe:06x}"
        for stage in ("prepare", "features", "train", "evaluate", "export"):
            at += 60
            add_run(store, root, f"pipe{pipe:02d}-{stage}", stage, {"seed": pipe, "rows": 1000 * (1 + pipe % 4)}, tag, at, folder=stage)
    for alone in range(200):
        at += 900
        add_run(store, root, f"alone-{alone:04d}", ["train", "explore", "report"][alone % 3], {"lr": 0.1, "seed": alone},
                None, at, extra=f"print({alone})" if alone % 10 == 0 else "", fail=alone % 23 == 0)
    for v, alias in ((1, None), (2, "production"), (3, "staging")):
        path = root / "bundles" / f"v{v}"
        path.mkdir(parents=True)
        store.add_version("scorer", str(path), f"{v:064x}", run_id=f"pipe{v:02d}-export", metrics={"accuracy": 0.8 + v / 100})
        if alias:
            store.set_alias("scorer", alias, v)
    return ids


def pages(ids: dict) -> dict:
    q = lambda **query: "/?" + urllib.parse.urlencode(query, doseq=True)
    return {"runs (1,000)": "/", "a sweep (50)": q(q=ids["sweep"]), "the study (200)": q(q="tune:study:"), "a run": "/runs/tune-0042",
            "compare 2": "/compare?" + urllib.parse.urlencode({"id": ids["fifty"][:2]}, doseq=True),
            "compare 50": "/compare?" + urllib.parse.urlencode({"id": ids["fifty"]}, doseq=True),
            "models": "/models", "a model": "/models/scorer"}


def fetch(url: str) -> float:
    start = time.perf_counter()
    with urllib.request.urlopen(url, timeout=120) as answer:
        answer.read()
        assert answer.status == 200, (url, answer.status)
    return time.perf_counter() - start


def main():
    repeat = 3 if "--quick" in sys.argv else 10
    with tempfile.TemporaryDirectory() as tmp:
        root, start = Path(tmp), time.perf_counter()
        store = RunStore(root / "runs.db")
        ids = fill(store, root / "runs")
        print(f"store of {len(store.runs()):,} runs built in {time.perf_counter() - start:.0f} s")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        server = subprocess.Popen([BIN / "workbench", "ui", "--store", root / "runs.db", "--port", str(port)],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, "MPLBACKEND": "Agg"})
        try:
            base = f"http://127.0.0.1:{port}"
            for _ in range(100):
                try:
                    fetch(base + "/models")
                    break
                except OSError:
                    time.sleep(0.2)
            worst = 0.0
            print(f"{'page':<16} {'first':>7} {'median':>7} {'max':>7}   (seconds, {repeat} fetches after the first)")
            for name, path in pages(ids).items():
                first = fetch(base + path)
                times = [fetch(base + path) for _ in range(repeat)]
                worst = max(worst, max(times))
                print(f"{name:<16} {first:7.2f} {statistics.median(times):7.2f} {max(times):7.2f}")
            print(f"slowest page after the first view: {worst:.2f} s (target <= 1 s): {'met' if worst <= 1 else 'NOT met'}")
        finally:
            server.terminate()
            server.wait()


if __name__ == "__main__":
    main()

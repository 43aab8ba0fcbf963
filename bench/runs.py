"""Run store listings at scale: a store of 100,000 runs with 20 metrics each (and a 10-point history of each metric).

Measured, each the median of 5: `runs(last=20)` (what `workbench runs` shows, opening the store included) and
`runs(last=1000)` (the runs page), against the bare SQL queries that read the same rows (the runs, then their latest
values) with no DataFrame built; and `RunStore.history` of one metric. Target: `runs(last=20)` under 1 s; the ratios
say what the convenience costs. Run: `make bench` or `.venv/bin/python bench/runs.py`.
"""
import json
import sqlite3
import statistics
import tempfile
import time
from contextlib import closing
from pathlib import Path

from workbench.runs import runs
from workbench.store import RunStore

RUNS, METRICS, STEPS = 100_000, 20, 10


def build(path: Path):
    store = RunStore(path)  # the schema
    names = [f"metric_{j}" for j in range(METRICS)]
    with closing(sqlite3.connect(path)) as db, db:
        db.executemany("INSERT INTO runs (id, notebook, status, started, finished, duration, params) VALUES (?, 'train.ipynb', 'ok', ?, ?, 1.0, ?)",
                       ((f"run-{i:06d}", 1e9 + i, 1e9 + i + 1, json.dumps({"lr": 0.001 * (i % 7), "seed": i})) for i in range(RUNS)))
        db.executemany("INSERT INTO latest (run_id, name, value, kind) VALUES (?, ?, ?, 'metric')",
                       ((f"run-{i:06d}", n, json.dumps(i * 1e-6)) for i in range(RUNS) for n in names))
        db.executemany("INSERT INTO records (run_id, name, value, kind, at, step) VALUES (?, ?, ?, 'metric', ?, ?)",
                       ((f"run-{i:06d}", n, json.dumps(s * 0.1), 1e9 + i, s) for i in range(0, RUNS, 100) for n in names for s in range(STEPS)))
    return store


def bare(path: Path, last: int):
    with closing(sqlite3.connect(path)) as db:
        rows = db.execute("SELECT * FROM runs ORDER BY started DESC LIMIT ?", (last,)).fetchall()
        ids = [r[0] for r in rows]
        values = [v for i in range(0, len(ids), 900)
                  for v in db.execute(f"SELECT run_id, name, value FROM latest WHERE run_id IN ({','.join('?' * len(ids[i:i + 900]))})", ids[i:i + 900])]
    return rows, values


def median_seconds(fn, *args, repeat: int = 5) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn(*args)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main():
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "runs.db"
        start = time.perf_counter()
        store = build(path)
        print(f"store of {RUNS:,} runs x {METRICS} metrics built in {time.perf_counter() - start:.1f} s "
              f"({path.stat().st_size / 2**20:.0f} MiB)")
        for last in (20, 1000):
            ours = median_seconds(lambda: runs(last=last, store=path))
            reference = median_seconds(bare, path, last)
            target = " (target < 1 s)" if last == 20 else ""
            print(f"  runs(last={last}): {ours * 1000:7.1f} ms{target}; bare SQL {reference * 1000:6.1f} ms; ratio {ours / reference:.1f}x")
        history = median_seconds(store.history, "run-000100", "metric_3")
        print(f"  history of one metric: {history * 1000:.1f} ms")


if __name__ == "__main__":
    main()

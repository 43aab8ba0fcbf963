"""explore on a generated 1,000,000-row x 20-column frame, against pandas describe(include="all") in the same run.

Columns: 12 numeric, 5 categorical, 1 boolean, 1 datetime, 1 text; 5% of cells missing. Prints seconds for
profile() (its two threads, and one: each <= 1.0x describe), the widget build, the static report, their sum, the
ratio of that sum to describe(include="all"), and the peak extra memory of the profile against the frame's own size, and what the static text/html fallback adds to the
widget's mime bundle. Targets: ratio <= 1.5, memory < frame size, fallback <= 10% of explore().
Run: `make bench` or `.venv/bin/python bench/explore.py [ROWS ...]` (the issue's sizes: 200000 1000000).
"""
import os
import sys
import time
import tracemalloc

import numpy as np
import pandas as pd

from workbench.explore import Explorer, profile, report_html
from workbench.data import Data


def make_frame(rows: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    cols = {}
    for i in range(12):
        cols[f"num{i}"] = rng.normal(i, 1 + i, rows) if i % 3 else rng.exponential(2.0, rows)
    for i in range(5):
        cols[f"cat{i}"] = pd.Categorical(rng.choice([f"c{j}" for j in range(3 + 10 * i)], rows)) if i % 2 else \
            pd.Series(rng.choice([f"v{j}" for j in range(5 + 5 * i)], rows), dtype="str")
    cols["flag"] = rng.random(rows) < 0.3
    cols["when"] = pd.Timestamp("2020-01-01") + pd.to_timedelta(rng.integers(0, 2000 * 86400, rows), unit="s")
    words = np.array(["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta"])
    cols["text"] = pd.Series([" ".join(w) for w in words[rng.integers(0, 8, (rows, 5))]], dtype="str")
    df = pd.DataFrame(cols)
    for c in df.columns:
        if c != "flag":
            df.loc[rng.random(rows) < 0.05, c] = None
    return df


def best_of(fn, repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def interleaved(fns, repeat: int = 7) -> list:
    "The best time of each of `fns`, run in turn `repeat` times: a noisy moment costs each the same."
    times = [[] for _ in fns]
    for _ in range(repeat):
        for fn, t in zip(fns, times):
            start = time.perf_counter()
            fn()
            t.append(time.perf_counter() - start)
    return [min(t) for t in times]


def main(rows: int):
    df = make_frame(rows)
    frame_mb = df.memory_usage(deep=True).sum() / 2**20
    describe, prof_s, prof_1 = interleaved([lambda: df.describe(include="all"), lambda: profile(df), lambda: profile(df, workers=1)])
    p = profile(df)
    widget_s = best_of(lambda: Explorer(Data(df), p).widget)
    static_s = best_of(lambda: report_html(p, df.head(10)))
    os.environ["WORKBENCH_DISPLAY"] = "widgets"  # the bundle JupyterLab gets: widget + text/html fallback
    bundle_s = best_of(lambda: Explorer(Data(df), p)._repr_mimebundle_())
    widget_only_s = best_of(lambda: Explorer(Data(df), p).widget._repr_mimebundle_())
    tracemalloc.start()
    profile(df)
    peak_mb = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    total = prof_s + widget_s + static_s
    print(f"frame: {rows:,} rows x {df.shape[1]} columns, {frame_mb:,.0f} MiB")
    print(f"describe(include='all'): {describe:6.2f} s   (reference)")
    print(f"profile():               {prof_s:6.2f} s   ratio to describe: {prof_s / describe:.2f}x (target <= 1.0x)")
    print(f"profile(workers=1):      {prof_1:6.2f} s   ratio to describe: {prof_1 / describe:.2f}x (target <= 1.0x)")
    print(f"widget build:            {widget_s:6.2f} s")
    print(f"static report:           {static_s:6.2f} s")
    fallback = bundle_s - widget_only_s
    print(f"text/html beside the widget: {fallback:6.3f} s = {fallback / widget_only_s:.1f}x the widget alone, "
          f"{fallback / (prof_s + widget_only_s):.1%} of explore() (profile + widget; target <= 10%)")
    print(f"profile+widget+static:   {total:6.2f} s   ratio to describe: {total / describe:.2f}x (target <= 1.5x)")
    print(f"peak extra memory of profile(): {peak_mb:,.0f} MiB = {peak_mb / frame_mb:.2f}x the frame (target < 1x)")
    try:
        from ydata_profiling import ProfileReport
    except ImportError:
        print("ydata-profiling not installed: no comparison")
    else:
        y = best_of(lambda: ProfileReport(df, minimal=True, progress_bar=False).get_description(), repeat=1)
        print(f"ydata-profiling minimal: {y:6.2f} s   ({y / total:.1f}x workbench)")


if __name__ == "__main__":
    for rows in [int(a) for a in sys.argv[1:]] or [1_000_000]:
        main(rows)

"""Evaluation speed: `evaluate` on a million predictions against scikit-learn's own report, in the same run.

A million rows of a 10-class problem (probabilities from noisy logits), with two sensitive columns (2 and 5 values:
10 intersections). Reference: `classification_report` + `roc_auc_score(multi_class="ovr")` on the same arrays.
Measured: `evaluate(y=..., y_pred=..., y_proba=..., groups=...)` (every metric, 1,000 bootstrap resamples, the group
report), then its plots and its static HTML report. Both sides run once untimed first, so imports are not counted.
Each is timed three times; the medians are compared. Target: <= 3x. First `evaluate` alone at 200,000 and 1,000,000
rows against the same reference: target <= 2x (`taskset -c 0` in front measures one core).

Then `monitor(reference, current)` on a 1,000,000-row reference and a 100,000-row current frame of 20 columns (15
numeric, 5 categorical; 3 of them shifted), against `explore.compare` on the same frames. Target: <= 2x.
Run: `make bench` or `.venv/bin/python bench/evaluate.py`.
"""
import statistics
import time

import numpy as np
import pandas as pd
from sklearn.metrics import classification_report, roc_auc_score

from workbench.evaluate import evaluate
from workbench.explore import compare
from workbench.monitor import monitor


def data(n: int, classes: int = 10, seed: int = 0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, n)
    logits = rng.normal(size=(n, classes))
    logits[np.arange(n), y] += 1.5
    proba = np.exp(logits)
    proba /= proba.sum(1, keepdims=True)
    groups = pd.DataFrame({"sex": rng.choice(["f", "m"], n), "region": rng.choice(list("abcde"), n)})
    return y, proba.argmax(1), proba, groups


def reference(y, pred, proba):
    classification_report(y, pred)
    roc_auc_score(y, proba, multi_class="ovr")


def ours(y, pred, proba, groups):
    result = evaluate(y=y, y_pred=pred, y_proba=proba, groups=groups)
    result.plots()
    result.to_html()
    return result


def timed(fn, *args) -> float:
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


def alone(rows: int):
    "evaluate() by itself (every metric, its intervals, the groups) against the reference: target <= 2x."
    y, pred, proba, groups = data(rows)
    ref = statistics.median(timed(reference, y, pred, proba) for _ in range(3))
    mine = statistics.median(timed(lambda: evaluate(y=y, y_pred=pred, y_proba=proba, groups=groups)) for _ in range(3))
    print(f"{rows:>9,} predictions: reference {ref:6.2f} s, evaluate {mine:6.2f} s   ratio {mine / ref:.2f}x (target <= 2x)")


def main():
    small = data(10_000)
    reference(*small[:3])
    ours(*small)  # imports and first-call set-up, on both sides
    for rows in (200_000, 1_000_000):
        alone(rows)
    y, pred, proba, groups = data(1_000_000)
    ref = statistics.median(timed(reference, y, pred, proba) for _ in range(3))
    mine = statistics.median(timed(ours, y, pred, proba, groups) for _ in range(3))
    result = ours(y, pred, proba, groups)
    print(f"1,000,000 predictions, 10 classes, 2 group columns (10 groups); medians of 3")
    print(f"  classification_report + roc_auc_score: {ref:6.2f} s")
    print(f"  evaluate + plots + report:             {mine:6.2f} s   ratio {mine / ref:.2f}x (target <= 3x)")
    low, high = result.intervals["accuracy"]
    print(f"  accuracy {result.metrics['accuracy']:.4f} [{low:.4f}, {high:.4f}], ROC AUC {result.metrics['roc_auc']:.4f}, "
          f"accuracy difference between groups {result.groups.gaps['accuracy_difference']:.4f}")


def frames(seed: int = 0):
    rng = np.random.default_rng(seed)

    def frame(n, shift):
        numeric = {f"n{j}": rng.normal(shift if j < 3 else 0, 1, n) for j in range(15)}
        return pd.DataFrame(numeric | {f"c{j}": rng.choice(list("abcdef"), n) for j in range(5)})

    return frame(1_000_000, 0.0), frame(100_000, 0.6)


def drift():
    reference, current = frames()
    monitor(reference.head(1000), current.head(1000))  # imports and first-call set-up
    ref = statistics.median(timed(compare, reference, current) for _ in range(3))
    mine = statistics.median(timed(monitor, reference, current) for _ in range(3))
    print("1,000,000 reference x 100,000 current rows, 20 columns; medians of 3")
    print(f"  explore.compare: {ref:6.2f} s")
    print(f"  monitor:         {mine:6.2f} s   ratio {mine / ref:.2f}x (target <= 2x); {monitor(reference, current).verdict}")


if __name__ == "__main__":
    main()
    drift()

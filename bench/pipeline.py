"""Pipelines: how a sweep scales with workers, and what a cached re-run of the demo costs.

1. An 8-run sweep (`workbench sweep`, lr x epochs) of a small training notebook (an MLP on synthetic data, through
   workbench's Trainer), with --workers 1 and then --workers 2. Speedup = time(1) / time(2); the limit on a 2-core
   machine is 2x, and each run pays a kernel start and its imports, which parallelise too.
2. The demo pipeline (nbs/pipelines/demo.yaml, smoke values) in a fresh folder, then again: every stage cached.
   Ratio = time(cached) / time(first).
3. A two-stage pipeline whose first stage writes a `size` output (1 KB, then 2 GB) read by the second, run once, then
   again cached. Ratio = time(cached, 2 GB) / time(cached, 1 KB); target <= 2x: an untouched output is not read again.

Each figure is the whole `workbench` command, start-up included, as a user waits for it.
Run: `make bench` or `.venv/bin/python bench/pipeline.py`.
"""
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
WORKBENCH = Path(sys.executable).parent / "workbench"

TRAIN = """\
from workbench.runs import record
from workbench.train import Trainer, synth_classification, synth_mlp

train_dl, valid_dl = synth_classification(n=2048, seed=0)
result = Trainer(synth_mlp(seed=0), train_dl, valid_dl, metrics=["accuracy"], lr=lr, seed=0, progress=False).fit(epochs)
record("accuracy", result.metrics["accuracy"])
"""


def timed(*args) -> float:
    start = time.perf_counter()
    out = subprocess.run([str(WORKBENCH), *map(str, args)], capture_output=True, text=True, cwd=ROOT)
    if out.returncode != 0:
        sys.exit(f"workbench {' '.join(map(str, args))} failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
    return time.perf_counter() - start


def main():
    work = Path(tempfile.mkdtemp())
    store = work / "runs.db"
    params = nbformat.v4.new_code_cell("lr = 1e-3\nepochs = 1")
    params.metadata["tags"] = ["parameters"]
    nb = nbformat.v4.new_notebook(cells=[params, nbformat.v4.new_code_cell(TRAIN)])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "python3", "language": "python"}
    nbformat.write(nb, work / "train.ipynb")
    grid = ["-p", "lr=1e-3,3e-3,1e-2,3e-2", "-p", "epochs=2,4", "--metric", "accuracy", "--store", store]

    print("8-run sweep of a small training notebook (workbench sweep, lr x epochs)")
    one = timed("sweep", work / "train.ipynb", *grid, "--workers", "1", "-o", work / "sweep-1")
    two = timed("sweep", work / "train.ipynb", *grid, "--workers", "2", "-o", work / "sweep-2")
    print(f"  --workers 1: {one:6.1f} s")
    print(f"  --workers 2: {two:6.1f} s   speedup = {one / two:.2f}x (limit on 2 cores: 2x)")

    print("demo pipeline (nbs/pipelines/demo.yaml, smoke values)")
    demo = ["run", ROOT / "nbs" / "pipelines" / "demo.yaml", "-p", "smoke=true", "-o", work / "demo", "--store", store]
    first = timed(*demo)
    cached = timed(*demo)
    print(f"  first run:  {first:6.1f} s")
    print(f"  cached run: {cached:6.1f} s   cached/first = {cached / first:.3f}")

    print("a cached re-run with a 2 GB output against one with a 1 KB output")
    cached = {}
    for label, size in (("1 KB", 1024), ("2 GB", 2 << 30)):
        folder = work / f"big-{size}"
        folder.mkdir()
        write = nbformat.v4.new_code_cell(f"with open(f'{{run_dir}}/blob.bin', 'wb') as f:\n    f.truncate({size})")
        read = nbformat.v4.new_code_cell("import os\nprint(os.path.getsize(blob))")
        for name, cell, p in (("write", write, "run_dir = '.'"), ("read", read, "blob = ''")):
            params = nbformat.v4.new_code_cell(p)
            params.metadata["tags"] = ["parameters"]
            nb = nbformat.v4.new_notebook(cells=[params, cell], metadata={"kernelspec": {"name": "python3", "display_name": "python3", "language": "python"}})
            nbformat.write(nb, folder / f"{name}.ipynb")
        (folder / "p.yaml").write_text("stages:\n  write: {notebook: write.ipynb, outputs: {blob: blob.bin}}\n"
                                       "  read: {notebook: read.ipynb, params: {blob: '${write.outputs.blob}'}}\n")
        args = ["run", folder / "p.yaml", "-o", folder / "out", "--store", store, "--no-html"]
        first = timed(*args)
        cached[label] = min(timed(*args) for _ in range(3))
        print(f"  {label}: first run {first:6.1f} s, cached re-run {cached[label]:5.2f} s (best of 3)")
    print(f"  cached 2 GB / cached 1 KB = {cached['2 GB'] / cached['1 KB']:.2f}x (target <= 2x)")


if __name__ == "__main__":
    main()

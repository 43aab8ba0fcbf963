"""Running notebooks as tests: `workbench test` against nbdev_test and nbmake, in the same run.

1. The project's chapters (nbs/*.ipynb), two at a time: `workbench test --workers 2` (each notebook in its own kernel)
   vs `nbdev_test --n_workers 2` (in-process shells, no isolation) vs `pytest --nbmake -n 2` (when nbmake is installed).
2. Eight trivial notebooks back to back: per-notebook cost of `workbench test --workers 1` vs the papermill CLI once
   per notebook, and the bare cost of starting and stopping a kernel (jupyter_client) measured here.
3. One generated notebook of 500 small cells: `workbench run` vs the papermill CLI (which writes the whole notebook
   around every cell) vs `jupyter nbconvert --execute`; and a 5-cell notebook, `workbench run` vs papermill.

Targets: workbench test no slower than nbmake -n 2 or nbdev_test (each notebook a kernel forked from a template); the 500-cell notebook no slower than
nbconvert (its cost linear in the cells); `workbench run` within 1.2x of papermill on a small notebook.
Prints seconds and ratios. Run: `make bench` or `.venv/bin/python bench/notebooks.py [--only long|chapters]`.
"""
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def timed(cmd, cwd, peer: bool = False) -> float:
    "Seconds `cmd` took; it must pass, but a peer may fail (said, since its time then covers less work)."
    start = time.perf_counter()
    out = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if out.returncode != 0 and not peer:
        sys.exit(f"{' '.join(map(str, cmd))} failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
    if out.returncode != 0:
        failed = [line.strip() for line in out.stderr.split("Failed On The Following Notebooks:")[-1].splitlines() if ".ipynb" in line]
        print(f"  ({Path(str(cmd[0])).name} failed{' on ' + ', '.join(failed) if failed else ''}: it stopped there, so its time covers less work)")
    return time.perf_counter() - start


def kernel_start_stop() -> float:
    from jupyter_client.manager import start_new_kernel

    start = time.perf_counter()
    km, kc = start_new_kernel(kernel_name="python3", extra_arguments=["--IPKernelApp.log_level=ERROR"])
    kc.execute_interactive("pass", timeout=30)
    kc.stop_channels()
    km.shutdown_kernel(now=True)
    return time.perf_counter() - start


def cells(work: Path, n: int) -> Path:
    "A notebook of `n` small code cells, each printing a line."
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(f"x{i} = {i}\nprint(x{i})") for i in range(n)])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "python3", "language": "python"}
    path = work / f"cells{n}.ipynb"
    nbformat.write(nb, path)
    return path


def long_notebooks(work: Path):
    "A 500-cell notebook and a 5-cell one: workbench run against papermill and nbconvert."
    for n in (500, 5):
        nb = cells(work, n)
        ours = min(timed([BIN / "workbench", "run", nb, "-o", work / f"run{n}-{i}", "--store", work / "runs.db"], work) for i in range(2))
        papermill = min(timed([BIN / "papermill", "--no-progress-bar", nb, work / f"pm{n}.ipynb"], work) for _ in range(2))
        print(f"one notebook of {n} cells")
        print(f"  workbench run:            {ours:6.1f} s")
        print(f"  papermill CLI:            {papermill:6.1f} s   workbench/papermill = {ours / papermill:.2f}x")
        if n == 500:
            nbconvert = timed([BIN / "jupyter", "nbconvert", "--to", "notebook", "--execute", nb, "--output", work / "nbc500.ipynb"], work)
            print(f"  jupyter nbconvert:        {nbconvert:6.1f} s   workbench/nbconvert = {ours / nbconvert:.2f}x (target <= 1.0x)")


def main():
    work = Path(tempfile.mkdtemp())
    try:
        if "--only" in sys.argv and sys.argv[-1] == "long":
            return long_notebooks(work)
        chapters_only = "--only" in sys.argv and sys.argv[-1] == "chapters"
        chapters = sorted((ROOT / "nbs").glob("*.ipynb"))
        copy = work / "nbs"
        copy.mkdir()
        for nb in chapters:  # nbdev_test takes a folder; give it exactly the chapters
            shutil.copy(nb, copy / nb.name)
        shutil.copy(ROOT / "settings.ini", work / "settings.ini")
        print(f"{len(chapters)} chapters of nbs/, 2 workers")
        ours = timed([BIN / "workbench", "test", *chapters, "--workers", "2", "-o", work / "out", "--store", work / "runs.db"], ROOT / "nbs")
        nbdev = timed([BIN / "nbdev_test", "--path", copy, "--n_workers", "2"], work, peer=True)
        print(f"  workbench test --workers 2: {ours:6.1f} s")
        print(f"  nbdev_test --n_workers 2:   {nbdev:6.1f} s   workbench/nbdev_test = {ours / nbdev:.2f}x (target <= 1.0x)")
        if chapters_only:
            return
        try:
            import nbmake  # noqa: F401
        except ImportError:
            print("  nbmake not installed: no comparison")
        else:
            make = timed([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-c", "/dev/null", "--nbmake",
                          "-n", "2", *chapters], copy)
            print(f"  pytest --nbmake -n 2:       {make:6.1f} s   workbench/nbmake = {ours / make:.2f}x (target <= 1.0x)")

        trivial = work / "trivial"
        trivial.mkdir()
        for i in range(8):
            nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(f"x = {i}")])
            nb.metadata["kernelspec"] = {"name": "python3", "display_name": "python3", "language": "python"}
            nbformat.write(nb, trivial / f"t{i}.ipynb")
        notebooks = sorted(trivial.glob("*.ipynb"))
        kernel = min(kernel_start_stop() for _ in range(3))
        serial = timed([BIN / "workbench", "test", trivial, "--workers", "1", "-o", work / "out8", "--store", work / "runs.db"], work)
        start = time.perf_counter()
        for nb in notebooks:
            timed([BIN / "papermill", "--no-progress-bar", nb, work / f"{nb.stem}-out.ipynb"], work)
        papermill = time.perf_counter() - start
        print("8 trivial notebooks, one at a time")
        print(f"  bare kernel start+stop:     {kernel:6.2f} s each")
        print(f"  workbench test --workers 1: {serial / 8:6.2f} s each  ({serial / 8 / kernel:.1f}x a bare kernel)")
        print(f"  papermill CLI per notebook: {papermill / 8:6.2f} s each  ({papermill / serial:.1f}x workbench)")
        long_notebooks(work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

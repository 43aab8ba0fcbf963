"""Notebooks nobody here wrote: papermill's own test notebooks, as installed with papermill, run by workbench.

Each is run by papermill itself and by `run_notebook` (on a kernel of its own, and on one forked from a template, as
`workbench test` runs it), and the verdicts must agree: the same notebooks pass, the same
fail. One difference is on purpose: a notebook with no kernelspec (as VS Code saves a blank one) runs on this
Python's kernel instead of failing with papermill's "No kernel name found". A failure must name its cell (except a
kernel that does not exist, where no cell ran), and nothing may be diagnosed as a dead kernel.
"""
import logging
import shutil
from pathlib import Path

import papermill
import pytest

from workbench.run import run_notebook

SHIPPED = Path(papermill.__file__).parent / "tests" / "notebooks"
SLOW = {"keyboard_interrupt.ipynb"}  # sleeps 60 s, for papermill's own test to interrupt
NOTEBOOKS = sorted(str(p.relative_to(SHIPPED)) for p in SHIPPED.rglob("*.ipynb") if p.name not in SLOW)


def papermill_verdict(notebook: Path, out: Path) -> str:
    logging.getLogger("papermill").setLevel(logging.CRITICAL)
    try:
        papermill.execute_notebook(str(notebook), str(out), progress_bar=False, cwd=str(notebook.parent))
    except Exception as e:  # its verdict, whatever the reason
        return f"failed ({type(e).__name__})"
    return "ok"


@pytest.fixture(scope="module")
def copies(tmp_path_factory):
    "A copy of papermill's notebooks: some write beside themselves."
    root = tmp_path_factory.mktemp("papermill") / "notebooks"
    shutil.copytree(SHIPPED, root)
    return root


def test_papermill_ships_its_notebooks():
    assert len(NOTEBOOKS) >= 20, f"papermill's test notebooks are missing from {SHIPPED}"


@pytest.mark.parametrize("warm", [False, True], ids=["cold", "forked"])  # forked: as `workbench test` runs them
@pytest.mark.parametrize("name", NOTEBOOKS)
def test_verdicts_agree_with_papermill(name, warm, copies, tmp_path):
    notebook = copies / name
    theirs = papermill_verdict(notebook, tmp_path / "papermill.ipynb")
    run = run_notebook(notebook, out_dir=tmp_path / "workbench", html=False, warm=warm)
    ours = "ok" if run.ok else "failed"
    if name == "blank-vscode.ipynb":
        assert theirs == "failed (ValueError)" and ours == "ok"  # no kernelspec: this Python's kernel
        return
    assert ours == theirs.split(" ")[0], f"papermill: {theirs}; workbench: {run.describe_error()}"
    if not run.ok:
        assert run.error["ename"] not in ("DeadKernelError", "CellExecutionError") and run.error["evalue"] is not None
        assert run.error["cell"] is not None or run.error["ename"] == "NoSuchKernel", run.describe_error()

"""The generated package, the cleaned notebooks and README.md must be in step with nbs/.

Each check works on a scratch copy, so it never changes the checkout, and its failure names the command that fixes it.
"""
import filecmp
import shutil
import subprocess
import sys
from pathlib import Path

from conftest import ROOT

BIN = Path(sys.executable).parent


def _differences(a: Path, b: Path) -> list[str]:
    "Relative paths of files that differ, or exist on one side only, under folders `a` and `b`."
    files = lambda d: {p.relative_to(d) for p in d.rglob("*") if p.is_file() and "__pycache__" not in p.parts}
    return sorted(str(f) for f in files(a) ^ files(b)) + sorted(
        str(f) for f in files(a) & files(b) if not filecmp.cmp(a / f, b / f, shallow=False)
    )


def _scratch(tmp_path: Path, *names: str) -> Path:
    for name in names:
        src = ROOT / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, tmp_path / name)
    return tmp_path


def test_package_matches_notebooks(tmp_path):
    work = _scratch(tmp_path, "settings.ini", "nbs", "workbench")
    subprocess.run([BIN / "nbdev_export"], cwd=work, check=True, capture_output=True)
    changed = _differences(ROOT / "workbench", work / "workbench")
    assert not changed, f"workbench/ is out of step with nbs/ ({changed}): run `make sync` (nbdev_export) and commit notebooks and code together"


def test_notebooks_are_clean(tmp_path):
    work = _scratch(tmp_path, "settings.ini", "nbs")
    subprocess.run([BIN / "nbdev_clean"], cwd=work, check=True, capture_output=True)
    changed = _differences(ROOT / "nbs", work / "nbs")
    assert not changed, f"notebooks carry execution counts or metadata ({changed}): run `make sync` (nbdev_clean)"


def test_readme_matches_index(tmp_path):
    subprocess.run(["make", "--no-print-directory", "-s", "_readme", f"README_DIR={tmp_path}"], cwd=ROOT, check=True)
    fresh, current = (tmp_path / "README.md").read_text(), (ROOT / "README.md").read_text()
    assert fresh == current, "README.md is stale: run `make readme` (it renders nbs/index.ipynb) and commit it"


def test_import_is_light():
    code = "import sys, workbench, workbench.core, workbench.runs, workbench.run, workbench.executors, workbench.pipeline, workbench.sweep, workbench.testing, workbench.cli; print(' '.join(sys.modules))"
    loaded = set(subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout.split())
    heavy = {"nbdev", "fastcore", "torch", "papermill", "matplotlib", "pandas", "nbconvert"} & loaded
    assert not heavy, f"`import workbench` pulls in {sorted(heavy)}; import them inside the functions that use them"

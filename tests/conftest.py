import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

from workbench.notebooks import make_notebook

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "test-results"  # executed notebooks are kept here for inspection (git-ignored)
WORKBENCH = str(Path(sys.executable).parent / "workbench")  # the console script of the installed package


def workbench(*args, cwd=None, timeout=300) -> subprocess.CompletedProcess:
    "Run the `workbench` command as a shell would; its output captured as text."
    return subprocess.run([WORKBENCH, *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=timeout)


@pytest.fixture(autouse=True)
def run_store(tmp_path, monkeypatch):
    "Each test records its runs in its own store, never the project's runs/runs.db."
    path = tmp_path / "runs.db"
    monkeypatch.setenv("WORKBENCH_STORE", str(path))
    monkeypatch.delenv("WORKBENCH_RUNS_DB", raising=False)
    return path


def write_notebook(path: Path, *sources: str, parameters: str | None = None) -> Path:
    "A notebook of code cells `sources`, after a cell tagged `parameters` when `parameters` is given."
    nbformat.write(make_notebook(*sources, params_cell=parameters), path)
    return path


def start_until(cmd, flag: Path, timeout: float = 120, **popen) -> tuple:
    "Start `cmd`, wait until the notebook it runs writes its kernel's pid to `flag`; the process and that pid."
    proc = subprocess.Popen(list(map(str, cmd)), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)
    deadline = time.monotonic() + timeout
    while not flag.exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.2)
    assert flag.exists(), proc.communicate()
    time.sleep(0.5)  # the kernel is inside its cell now
    return proc, int(flag.read_text())


def alive(pid: int) -> bool:
    "Whether process `pid` runs (a zombie does not)."
    try:
        return Path(f"/proc/{pid}/status").read_text().split("State:")[1].split()[0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


def pipeline_folder(root: Path) -> Path:
    "A project as a user keeps it: two notebooks that are a pipeline's stages, one that stands alone, and the YAML."
    write_notebook(root / "prepare.ipynb", "from pathlib import Path", "Path(run_dir, 'n.txt').write_text(str(n))",
                   parameters="run_dir = '.'\nn = 2")
    write_notebook(root / "use.ipynb", "from pathlib import Path\nfrom workbench.runs import record",
                   "record('twice', 2 * int(Path(data).read_text()))", parameters="data = ''")
    write_notebook(root / "alone.ipynb", "x = 1")
    (root / "flow.yaml").write_text("stages:\n  prepare: {notebook: prepare.ipynb, outputs: {data: n.txt}}\n"
                                    "  use: {notebook: use.ipynb, params: {data: '${prepare.outputs.data}'}}\n")
    return root


def assert_same_answers(got, want, rtol: float = 1e-4, atol: float = 1e-3):
    "What a loaded bundle answers against what the model answers: labels exactly, values within the tolerance."
    import numpy as np

    if np.asarray(want).dtype.kind in "iub":
        np.testing.assert_array_equal(got, want)
    else:
        np.testing.assert_allclose(got, want, rtol=rtol, atol=atol)

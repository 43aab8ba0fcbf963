"""`workbench run` killed with SIGKILL at four moments: its workers and their kernels die with it (within 5 s), no stage
that did not finish is marked ok, no version is half registered, and the next run leaves no temporary folder behind."""
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from conftest import WORKBENCH, alive, write_notebook
from workbench.store import RunStore

pytestmark = pytest.mark.xdist_group("kernels")

MODEL = "nn.Sequential(nn.Linear(4, 2)).eval(), torch.randn(4, 4), Path(run_dir) / 'bundle'"
MOMENTS = {  # what the stage does while it is killed (after flag() says "now"); held only until the test says "resume"
    "mid-stage": "flag()\ntime.sleep(60)",
    "while recording": "flag()\nfor i in range(1_000_000):\n    record('loss', 1.0 / (i + 1), step=i)",
    "mid-export": "import workbench.formats as f\ndef slow(*a, **k):\n    flag()\n    time.sleep(60)\n"
                  f"f._WRITERS['pt2'] = slow\nexport({MODEL}, overwrite=True)",
    "right after registration": f"export({MODEL}, formats=['onnx'], overwrite=True)\nflag()\ntime.sleep(60)",
}


def _descendants(pid: int) -> list:
    "Every living process below `pid`, by walking /proc."
    children = {}
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            fields = dict(line.split(":\t", 1) for line in status.read_text().splitlines() if ":\t" in line)
        except OSError:
            continue
        if fields.get("State", "").split()[0] != "Z":
            children.setdefault(int(fields["PPid"]), []).append(int(fields["Pid"]))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def _alive(pids) -> list:
    return [pid for pid in pids if alive(pid)]


def _kill(runner, below: list):
    "SIGKILL the runner; every process that was below it must be gone within 5 s."
    runner.send_signal(signal.SIGKILL)
    runner.wait(10)
    deadline = time.monotonic() + 5
    while _alive(below) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(below), f"still alive 5 s after the runner was killed: {_alive(below)}"


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="walks /proc to find the runner's processes")
@pytest.mark.parametrize("moment", MOMENTS)
def test_sigkill_of_the_runner_leaves_no_orphan_and_no_false_ok(tmp_path, moment):
    flag, resume = tmp_path / "kill-now", tmp_path / "resume"
    held = "\n".join("    " + line for line in MOMENTS[moment].splitlines())
    write_notebook(tmp_path / "stage.ipynb", "import time\nfrom pathlib import Path\nimport torch\nfrom torch import nn\n"
                   "from workbench.export import export\nfrom workbench.runs import record\n"
                   f"def flag():\n    Path({str(flag)!r}).write_text('now')",
                   f"if not Path({str(resume)!r}).exists():\n{held}",
                   f"export({MODEL}, formats=['onnx'], overwrite=True)\nrecord('finished', True)", parameters="run_dir = '.'")
    (tmp_path / "p.yaml").write_text("stages:\n  stage: {notebook: stage.ipynb, outputs: {bundle: bundle}}\n")
    command = [WORKBENCH, "run", str(tmp_path / "p.yaml"), "-o", str(tmp_path / "out"), "--no-lock"]
    runner = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 180
    while not flag.exists() and time.monotonic() < deadline and runner.poll() is None:
        time.sleep(0.1)
    assert flag.exists(), "the stage never reached its moment"
    below = _descendants(runner.pid)
    assert below, "the runner had no worker"
    _kill(runner, below)
    time.sleep(1)  # whatever an orphan would still have written, it would have by now
    store = RunStore(os.environ["WORKBENCH_STORE"])
    runs = store.runs()
    assert "ok" not in set(runs["status"]), runs[["notebook", "status"]]
    assert all(not records.get("finished") for records in map(store.records, runs["id"]))
    versions = store.models()
    assert versions.empty or all(Path(p, "metadata.json").is_file() for p in versions["path"])  # none half registered
    resume.write_text("go on")
    resumed = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-2000:]
    assert not list((tmp_path / "out").glob(".bundle.tmp-*")) and (tmp_path / "out" / "bundle" / "metadata.json").is_file()
    assert set(RunStore(os.environ["WORKBENCH_STORE"]).runs()["status"]) <= {"ok", "interrupted", "failed"}


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="walks /proc to find the runner's processes")
@pytest.mark.parametrize("workers", [1, 2])
def test_sigkill_of_workbench_test_takes_its_templates_and_forked_kernels(tmp_path, workers):
    "The templates `workbench test` forks kernels from, and the kernels, end with the runner that started them."
    suite, flags = tmp_path / "suite", tmp_path / "flags"
    suite.mkdir(), flags.mkdir()
    for name in ("a", "b"):  # a kernel of each worker holding its notebook when the runner is killed
        write_notebook(suite / f"{name}.ipynb", "import os, time\nimport numpy\nfrom pathlib import Path",
                       f"Path({str(flags)!r}, '{name}').write_text(str(os.getpid()))\ntime.sleep(120)")
    runner = subprocess.Popen([WORKBENCH, "test", str(suite), "--workers", str(workers), "-o", str(tmp_path / "out")],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while len(list(flags.iterdir())) < workers and time.monotonic() < deadline and runner.poll() is None:
        time.sleep(0.1)
    below = _descendants(runner.pid)
    kernels = [int(p.read_text()) for p in flags.iterdir()]
    assert len(kernels) == workers and set(kernels) <= set(below), (kernels, below)
    assert any("_serve_forks" in Path(f"/proc/{pid}/cmdline").read_text() for pid in _alive(below))  # forked from a template
    _kill(runner, below)

"""The `workbench` command as a shell or CI uses it: exit codes and what it prints."""
from pathlib import Path

import pytest

from conftest import alive, pipeline_folder, start_until, workbench, write_notebook


def test_help_is_fast_and_lists_commands():
    out = workbench("--help")
    assert out.returncode == 0 and "run" in out.stdout and "params" in out.stdout


def test_run_records_and_writes_outputs(tmp_path):
    nb = write_notebook(tmp_path / "score.ipynb", "from workbench.runs import record\nrecord('score', lr * 2)", parameters="lr = 0.1")
    out = workbench("run", nb, "-p", "lr=0.25", "-o", tmp_path / "out")
    assert out.returncode == 0, out.stderr
    assert "score=0.5" in out.stdout
    assert (tmp_path / "out" / "score" / "score.ipynb").exists() and (tmp_path / "out" / "score" / "score.html").exists()


def test_failing_cell_is_named(tmp_path):
    nb = write_notebook(tmp_path / "fails.ipynb", "x = 1", "assert x == 2, 'x should be two'")
    out = workbench("run", nb, "-o", tmp_path / "out", "--no-html")
    assert out.returncode == 1
    assert "fails.ipynb) failed at cell 2: `assert x == 2, 'x should be two'`\n" in out.stderr
    assert "AssertionError: x should be two" in out.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (["run", "missing.ipynb"], "does not exist"),
        (["run", "notes.txt"], "not a notebook"),
        (["run", "broken.ipynb"], "not a valid notebook"),
        (["run", "p.ipynb", "-p", "batch=3"], "declares ['batch']; its notebooks accept ['lr']"),
        (["run", "p.ipynb", "-p", "lr=fast"], "declared float"),
        (["run", "plain.ipynb", "-p", "lr=1"], "declares ['lr']"),
        (["run", "p.ipynb", "p.yaml"], "give one pipeline (.yaml), or notebooks"),
        (["run", "p.ipynb", "--executor", "local", "--scheduler", "tcp://127.0.0.1:1"], "goes with executor='dask'"),
        (["run", "p.ipynb", "--timeout", "-5"], "timeout must be a positive number"),
        (["params", "missing.ipynb"], "does not exist"),
    ],
)
def test_bad_input_exits_2_with_a_message(tmp_path, args, message):
    write_notebook(tmp_path / "p.ipynb", "pass", parameters="lr = 0.1")
    write_notebook(tmp_path / "plain.ipynb", "pass")
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "broken.ipynb").write_text("{ not json")
    out = workbench(*args, cwd=tmp_path)
    assert out.returncode == 2, (out.stdout, out.stderr)
    assert message in out.stderr and "Traceback" not in out.stderr


def test_params_lists_types_defaults_and_help(tmp_path):
    nb = write_notebook(tmp_path / "p.ipynb", "pass", parameters="lr = 0.1  # learning rate\nepochs = 3")
    out = workbench("params", nb)
    assert out.returncode == 0
    assert out.stdout.splitlines() == ["lr: float = 0.1  # learning rate", "epochs: int = 3"]


def test_test_command_reports_failures_and_junit(tmp_path):
    write_notebook(tmp_path / "good.ipynb", "from workbench.runs import record\nrecord('n', n)", parameters="n = 1")
    write_notebook(tmp_path / "bad.ipynb", "raise RuntimeError('broken on purpose')")
    out = workbench("test", tmp_path, "-p", "n=5", "-p", "smoke=true", "--junit-xml", tmp_path / "junit.xml", "-o", tmp_path / "out")
    assert out.returncode == 1
    assert "bad.ipynb failed at cell 1: `raise RuntimeError('broken on purpose')`" in out.stderr
    assert "n=5" in out.stdout
    report = (tmp_path / "junit.xml").read_text()
    assert 'tests="2" failures="1"' in report and "broken on purpose" in report


def test_runs_reads_in_a_100_column_terminal_and_gives_scripts_everything(tmp_path):
    nb = write_notebook(tmp_path / "score.ipynb", "from workbench.runs import record\nrecord('score', lr * 10)\nrecord('loss', 1 - lr)",
                        parameters="lr = 0.1\ndata = 'data.parquet'\nseed = 0")
    assert workbench("sweep", nb, "-p", "lr=0.1,0.2,0.3", "-o", tmp_path / "sweep").returncode == 0
    long = tmp_path / "a" / "very" / "long" / "path" / "to" / "the" / "data.parquet"
    assert workbench("run", nb, "-p", f"data={long}", "-p", "seed=0", "-o", tmp_path / "out", "--no-html").returncode == 0
    out = workbench("runs", "--last", "10")
    lines = out.stdout.splitlines()
    assert out.returncode == 0 and lines[0].split()[:4] == ["run", "status", "started", "took"], out.stdout + out.stderr
    assert all(len(line) <= 100 for line in lines) and "lr" in lines[0].split() and "score" in lines[0].split()
    assert "seed" not in lines[0] and str(tmp_path) not in out.stdout  # a parameter that never differs, a path: not shown
    assert any(line.startswith("sweep score: 3 runs (3 ok)") for line in lines) and len(lines) == 1 + 1 + 3 + 1
    chosen = workbench("runs", "--columns", "seed,value.loss")
    assert chosen.returncode == 0 and chosen.stdout.splitlines()[0].split()[4:] == ["seed", "loss"], chosen.stdout
    wrong = workbench("runs", "--columns", "nope")
    assert wrong.returncode == 2 and "no run here recorded 'nope'" in wrong.stderr and "lr" in wrong.stderr
    every = workbench("runs", "--all")
    assert every.returncode == 0 and "param.data" in every.stdout and str(tmp_path) in every.stdout  # every column, whole
    import json

    records = json.loads(workbench("runs", "--json").stdout)
    assert len(records) == 4 and {"id", "status", "param.lr", "value.score"} <= set(records[0])


def test_test_runs_a_folder_with_a_pipeline_as_that_pipeline_and_writes_nothing_there(tmp_path, monkeypatch):
    project = tmp_path / "project"
    project.mkdir()
    pipeline_folder(project)
    before = sorted(p.name for p in project.iterdir())
    monkeypatch.delenv("WORKBENCH_STORE")  # the default store: under the output folder, not the project
    out = workbench("test", ".", "-p", "n=3", "-p", "smoke=true", "--junit-xml", tmp_path / "junit.xml", cwd=project)
    assert out.returncode == 0, out.stderr
    assert "twice=6" in out.stdout and "[prepare]" in out.stdout and "alone.ipynb" in out.stdout
    assert sorted(p.name for p in project.iterdir()) == before  # no runs/, no executed notebooks
    output = out.stdout.strip().splitlines()[-1].removeprefix("output: ")
    assert (Path(output) / "runs.db").exists() and (Path(output) / "pipeline-flow" / "use" / "use.ipynb").exists()
    assert 'tests="3" failures="0"' in (tmp_path / "junit.xml").read_text()


def test_test_runs_notebooks_without_kernelspec_and_early_exits(tmp_path):
    import nbformat

    for i, body in enumerate(["import sys\nsys.exit()", "import sys\nsys.exit(0)", "raise SystemExit"]):
        path = write_notebook(tmp_path / f"exit{i}.ipynb", "x = 1", body, "raise ValueError('must not run')")
        nb = nbformat.read(path, as_version=4)
        del nb.metadata["kernelspec"]  # as some editors save notebooks
        nbformat.write(nb, path)
    write_notebook(tmp_path / "fails.ipynb", "import sys\nsys.exit(3)")
    out = workbench("test", tmp_path, "-o", tmp_path / "out")
    assert out.returncode == 1
    assert out.stdout.count("stopped early by SystemExit at cell 2; 1 later cell not run") == 6  # progress + table
    assert "fails.ipynb failed at cell 1" in out.stderr and "SystemExit: exit code 3" in out.stderr
    assert "DeadKernelError" not in out.stdout + out.stderr
    executed = nbformat.read(tmp_path / "out" / "exit0" / "exit0.ipynb", as_version=4)
    assert executed.cells[-1].metadata["workbench"]["not_run"] == "the notebook stopped early at cell 2"


def test_a_cell_timeout_prints_no_traceback(tmp_path):
    nb = write_notebook(tmp_path / "slow.ipynb", "import time\ntime.sleep(60)")
    out = workbench("run", nb, "-o", tmp_path / "out", "--no-html", "--timeout", "2")
    text = out.stdout + out.stderr
    assert out.returncode == 1 and "CellTimeoutError" in text and "line 2: `time.sleep(60)`" in text
    assert "Traceback" not in text and "ERROR" not in text and "Timeout waiting" not in text, text
    loud = workbench("run", nb, "-o", tmp_path / "loud", "--no-html", "--timeout", "2", "--verbose")
    assert "Timeout waiting for execute reply" in loud.stdout + loud.stderr  # --verbose shows the rest


def test_a_refused_export_keeps_the_graph_dump_out_of_the_notebook(tmp_path):
    import nbformat

    nb = write_notebook(tmp_path / "refused.ipynb", "import torch\nfrom workbench.export import export",
                        "class Branchy(torch.nn.Module):\n    def forward(self, x):\n        return x if x.sum() > 0 else -x",
                        "bundle = export(Branchy(), torch.randn(4, 8), 'b', allow_partial=True, overwrite=True)\nprint(bundle)")

    def shown(out_dir, *flags):
        out = workbench("run", nb, "-o", tmp_path / out_dir, "--no-html", *flags)
        assert out.returncode == 0, out.stderr
        executed = nbformat.read(tmp_path / out_dir / "refused" / "refused.ipynb", as_version=4)
        return "".join(o.get("text", "") for c in executed.cells for o in c.get("outputs", [])), out.stdout + out.stderr

    quiet, terminal = shown("out")
    assert "not written: onnx could not be exported" in quiet and "Traceback" not in terminal
    assert "def forward" not in quiet and "GraphModule" not in quiet and len(quiet.splitlines()) < 10, quiet
    loud, _ = shown("loud", "--verbose")
    assert "def forward" in loud  # --verbose shows the rest


@pytest.mark.parametrize("content", [b"", b"{ not json", "caf\u00e9".encode("latin-1")], ids=["empty", "broken", "latin-1"])
def test_test_one_bad_notebook_fails_alone(tmp_path, content):
    write_notebook(tmp_path / "good.ipynb", "x = 1")
    (tmp_path / "bad.ipynb").write_bytes(content)
    out = workbench("test", tmp_path, "--junit-xml", tmp_path / "report.xml", "-o", tmp_path / "out")
    assert out.returncode == 1 and "Traceback" not in out.stderr, out.stdout + out.stderr
    assert "bad.ipynb" in out.stderr and "InputError" in out.stderr
    report = (tmp_path / "report.xml").read_text()
    assert 'tests="2" failures="1"' in report and 'name="good.ipynb"' in report


def test_ctrl_c_on_test_stops_kernels_and_still_writes_junit(tmp_path):
    import signal
    import time

    from conftest import WORKBENCH

    suite, flag = tmp_path / "suite", tmp_path / "kernel.pid"
    suite.mkdir()
    write_notebook(suite / "a_quick.ipynb", "x = 1")
    write_notebook(suite / "b_slow.ipynb", "import os, time\nfrom pathlib import Path",
                   f"Path({str(flag)!r}).write_text(str(os.getpid()))\ntime.sleep(300)")
    cmd = [WORKBENCH, "test", str(suite), "--workers", "1", "--junit-xml", str(tmp_path / "report.xml"),
           "-o", str(tmp_path / "out")]
    proc, kernel = start_until(cmd, flag)
    proc.send_signal(signal.SIGINT)  # what Ctrl-C in a terminal sends
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stdout + stderr
    assert "Traceback" not in stderr and "interrupted" in stderr
    time.sleep(1)
    assert not alive(kernel)
    report = (tmp_path / "report.xml").read_text()
    assert 'tests="2" failures="1"' in report and 'name="a_quick.ipynb"' in report and 'name="b_slow.ipynb"' in report


def test_p_values_are_read_as_yaml_1_2(tmp_path):
    nb = write_notebook(tmp_path / "echo.ipynb", "from workbench.runs import record\nrecord('country', country)\nrecord('n', n)",
                        parameters="country = 'se'\nn = 1")
    out = workbench("run", nb, "-p", "country=no", "-p", "n=010", "-o", tmp_path / "out", "--no-html")
    assert out.returncode == 0, out.stderr
    assert "country=no, n=10" in out.stdout  # YAML 1.1 would give False (refused: declared str) and 8

"""The `workbench` command as a shell or CI uses it: exit codes and what it prints."""
import pytest

from conftest import workbench, write_notebook


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


def test_runs_lists_recorded_runs(tmp_path):
    nb = write_notebook(tmp_path / "score.ipynb", "from workbench.runs import record\nrecord('score', 7)")
    assert workbench("run", nb, "-o", tmp_path / "out", "--no-html").returncode == 0
    out = workbench("runs", "--last", "3")
    assert out.returncode == 0 and "score.ipynb" in out.stdout and "value.score" in out.stdout and " ok " in out.stdout

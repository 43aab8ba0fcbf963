"""Notebook runs that go wrong, and the run store under concurrent writers."""
import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest

from conftest import write_notebook

from workbench.core import InputError
from workbench.run import run_notebook
from workbench.store import RunStore




def test_sys_exit_is_a_failure_naming_the_cell(tmp_path):
    run = run_notebook(write_notebook(tmp_path / "exits.ipynb", "x = 1", "import sys\nsys.exit(3)", "y = 2"), out_dir=tmp_path / "o", html=False)
    assert run.status == "failed" and run.error["cell"] == 2 and run.error["ename"] == "SystemExit"
    assert run.error["evalue"] == "exit code 3"


@pytest.mark.parametrize("stop", ["import sys\nsys.exit()", "import sys\nsys.exit(0)", "raise SystemExit"])
def test_an_early_exit_passes_and_marks_the_rest_not_run(tmp_path, stop):
    marker = tmp_path / "ran"
    nb = write_notebook(tmp_path / "stops.ipynb", "x = 1", stop, f"open({str(marker)!r}, 'w').close()")
    run = run_notebook(nb, out_dir=tmp_path / "o", html=False)
    assert run.status == "ok" and run.reason == "stopped early by SystemExit at cell 2; 1 later cell not run"
    assert not marker.exists()


def test_killed_kernel_is_reported_within_seconds(tmp_path):
    nb = write_notebook(tmp_path / "killed.ipynb", "x = 1", "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)", "y = 2")
    start = time.perf_counter()
    run = run_notebook(nb, out_dir=tmp_path / "o", html=False)
    assert time.perf_counter() - start < 30
    assert run.error["ename"] == "DeadKernelError" and run.error["cell"] == 2 and "out of memory" in run.error["evalue"]
    assert Path(run.output).exists()  # the executed notebook is kept


def test_retries_run_again_only_for_infrastructure(tmp_path):
    flag = tmp_path / "died-once"
    nb = write_notebook(tmp_path / "flaky.ipynb",
                   f"import os, signal, pathlib\nflag = pathlib.Path({str(flag)!r})\n"
                   "if not flag.exists():\n    flag.write_text('1')\n    os.kill(os.getpid(), signal.SIGKILL)")
    assert run_notebook(nb, out_dir=tmp_path / "o", html=False, retries=1).ok
    counter = tmp_path / "count"
    raising = write_notebook(tmp_path / "raises.ipynb",
                        f"import pathlib\np = pathlib.Path({str(counter)!r})\np.write_text(p.read_text() + 'x' if p.exists() else 'x')\n1 / 0")
    assert run_notebook(raising, out_dir=tmp_path / "o", html=False, retries=2).error["ename"] == "ZeroDivisionError"
    assert counter.read_text() == "x"  # a cell's own error is not retried


def test_kernel_that_fails_to_start_is_started_again(tmp_path, monkeypatch):
    "Two kernels started at once can race for a TCP port; the loser dies before kernel_info. It is started again."
    import json
    import sys

    starts = tmp_path / "starts"
    launcher = tmp_path / "launch.py"
    launcher.write_text(
        "import pathlib, sys\n"
        f"p = pathlib.Path({str(starts)!r})\n"
        "p.write_text(p.read_text() + 'x' if p.exists() else 'x')\n"
        "if len(p.read_text()) < 3:\n    sys.exit(1)  # as a kernel whose port was taken\n"
        "from ipykernel import kernelapp\nkernelapp.launch_new_instance()\n"
    )
    spec = tmp_path / "jupyter" / "kernels" / "flaky"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps(
        {"argv": [sys.executable, str(launcher), "-f", "{connection_file}"], "display_name": "flaky", "language": "python"}))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    run = run_notebook(write_notebook(tmp_path / "nb.ipynb", "x = 6 * 7"), out_dir=tmp_path / "o", html=False, kernel="flaky")
    assert run.ok, run.describe_error()
    assert starts.read_text() == "xxx"


def test_cell_timeout(tmp_path):
    nb = write_notebook(tmp_path / "slow.ipynb", "import time\ntime.sleep(60)")
    start = time.perf_counter()
    run = run_notebook(nb, out_dir=tmp_path / "o", html=False, timeout=2)
    assert time.perf_counter() - start < 30
    assert run.error["ename"] == "CellTimeoutError" and "timed out" in run.error["evalue"] and run.error["cell"] == 1


def test_fifty_megabyte_output_is_cut(tmp_path):
    run = run_notebook(write_notebook(tmp_path / "loud.ipynb", "print('y' * 50_000_000)"), out_dir=tmp_path / "o")
    assert run.ok
    assert Path(run.output).stat().st_size < 2_000_000 and Path(run.html).stat().st_size < 3_000_000
    assert "more characters cut from this output" in Path(run.output).read_text()


def test_two_runs_on_one_output_path(tmp_path):
    nb = write_notebook(tmp_path / "same.ipynb", "import time\ntime.sleep(5)", "from workbench.runs import record\nrecord('done', 1)")
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(1, mp_context=ctx) as pool:
        first = pool.submit(run_notebook, nb, out_dir=tmp_path / "o", html=False)
        deadline = time.time() + 60
        while not (tmp_path / "o" / ".same.ipynb.lock").exists() and time.time() < deadline:
            time.sleep(0.05)  # until the first run holds the output
        with pytest.raises(InputError, match=r"another run \(process \d+\) is writing"):
            run_notebook(nb, out_dir=tmp_path / "o", html=False)
        assert first.result().metrics == {"done": 1}
    assert not list((tmp_path / "o").glob(".*.lock"))


def _write_records(args):
    path, worker = args
    store = RunStore(path)
    for i in range(50):
        store.record(f"run-{worker}", "step", i)
    return worker


def test_store_with_eight_concurrent_writers(tmp_path):
    path = tmp_path / "runs.db"
    RunStore(path)
    with ProcessPoolExecutor(8, mp_context=multiprocessing.get_context("spawn")) as pool:
        assert sorted(pool.map(_write_records, [(path, w) for w in range(8)])) == list(range(8))
    import sqlite3

    with sqlite3.connect(path) as db:
        assert db.execute("SELECT COUNT(*) FROM records").fetchone()[0] == 400
        assert db.execute("SELECT COUNT(DISTINCT run_id) FROM records").fetchone()[0] == 8
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def _first_use(args):
    path, barrier = args
    barrier.wait()  # every process opens the new store at the same moment
    try:
        RunStore(path).record("run", "opened", 1)
    except Exception as e:  # reported, not raised: the test counts them
        return f"{type(e).__name__}: {e}"
    return None


def test_twenty_first_uses_of_a_new_store_at_once_never_fail(tmp_path):
    ctx = multiprocessing.get_context("fork")
    errors = []
    with ctx.Manager() as manager, ctx.Pool(20) as pool:
        for attempt in range(10):
            path, barrier = tmp_path / f"runs-{attempt}.db", manager.Barrier(20)
            errors += [e for e in pool.map(_first_use, [(path, barrier)] * 20) if e]
            assert RunStore(path).records("run") == {"opened": 1}
    assert errors == []


def test_a_file_that_is_not_a_store_is_named_and_kept(tmp_path):
    path = tmp_path / "runs.db"
    path.write_text("my notes, not a database " * 100)
    with pytest.raises(InputError, match=r"is not a SQLite run store .* left as it is: keep it") as e:
        RunStore(path)
    assert "move it away" not in str(e.value)
    assert path.read_text() == "my notes, not a database " * 100 and list(tmp_path.iterdir()) == [path]


def test_a_store_in_a_read_only_folder_says_so(tmp_path):
    import os
    import shutil
    import subprocess
    import sys
    import tempfile

    tmp_path = Path(tempfile.mkdtemp())  # pytest's own folders are private to their owner
    folder = tmp_path / "readonly"
    folder.mkdir()
    RunStore(folder / "old.db")  # an existing store, and a new one, in a folder the user cannot write
    folder.chmod(0o555)
    tmp_path.chmod(0o755)
    code = ("from workbench.store import RunStore\nimport sys\n"
            "for name in ('new.db', 'old.db'):\n"
            "    try:\n        RunStore(sys.argv[1] + '/' + name).start('r', 'nb.ipynb', {})\n"
            "    except Exception as e:\n        print(type(e).__name__, e)\n")
    as_user = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"] if os.getuid() == 0 else []  # root ignores modes
    out = subprocess.run([*as_user, sys.executable, "-c", code, str(folder)], capture_output=True, text=True,
                         cwd=tmp_path, env={**os.environ, "HOME": str(tmp_path)})
    lines = out.stdout.strip().splitlines()
    assert len(lines) == 2 and all(l.startswith("InputError") and "must be writable" in l for l in lines), out
    assert sorted(p.name for p in folder.iterdir()) == ["old.db"]
    folder.chmod(0o755)
    shutil.rmtree(tmp_path)


def test_odd_notebooks(tmp_path):
    import nbformat

    empty = nbformat.v4.new_notebook()  # no cells at all
    empty.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(empty, tmp_path / "empty.ipynb")
    assert run_notebook(tmp_path / "empty.ipynb", out_dir=tmp_path / "o1", html=False).ok
    text = write_notebook(tmp_path / "text.ipynb", "s = 'café ✓ 日本 🙂'\nprint(s)\nfrom workbench.runs import record\nrecord('s', s)")
    assert run_notebook(text, out_dir=tmp_path / "o2").metrics == {"s": "café ✓ 日本 🙂"}
    last = write_notebook(tmp_path / "last.ipynb", "x = 1", parameters="y = 2")
    nb = nbformat.read(last, as_version=4)
    nb.cells = nb.cells[1:] + nb.cells[:1]  # the parameters cell at the end
    nbformat.write(nb, last)
    run = run_notebook(last, {"y": 5}, out_dir=tmp_path / "o3", html=False)
    assert run.ok and nbformat.read(run.output, as_version=4).cells[-1].source.strip().endswith("y = 5")
    latin = tmp_path / "latin.ipynb"
    latin.write_bytes(text.read_text().encode("utf-8").replace("café ✓ 日本 🙂".encode(), "café".encode("latin-1")))
    with pytest.raises(InputError, match=r"is not UTF-8 text \(byte 0xe9 .*iconv"):
        run_notebook(latin, out_dir=tmp_path / "o4")
    (tmp_path / "zero.ipynb").write_bytes(b"")
    with pytest.raises(InputError, match="is an empty file, not a notebook"):
        run_notebook(tmp_path / "zero.ipynb", out_dir=tmp_path / "o5")


def test_a_trainer_inside_a_run_records_each_epoch(tmp_path):
    nb = write_notebook(tmp_path / "fit.ipynb",
                        "from workbench.train import Trainer, synth_classification, synth_mlp\n"
                        "Trainer(synth_mlp(), *synth_classification(n=256), metrics=['accuracy'], progress=False, seed=0).fit(3)")
    run = run_notebook(nb, out_dir=tmp_path / "out", html=False)
    assert run.ok, run.describe_error()
    store = RunStore()
    history = store.history(run.id, "valid_loss")
    assert history["step"].tolist() == [1, 2, 3, 3]  # one value per epoch, and the final value once more at the end
    assert store.records(run.id)["valid_loss"] == history["value"].iloc[-1] == run.metrics["valid_loss"]


def _old_store(path: Path):
    "A store as the first workbench wrote it: no host, no steps, no latest values."
    import sqlite3
    from contextlib import closing

    with closing(sqlite3.connect(path)) as db, db:
        db.execute("CREATE TABLE runs (id TEXT PRIMARY KEY, notebook TEXT NOT NULL, status TEXT NOT NULL, started REAL, "
                   "finished REAL, duration REAL, params TEXT, error TEXT, output TEXT, html TEXT, notebook_hash TEXT, "
                   "git_commit TEXT, pipeline TEXT)")
        db.execute("CREATE TABLE records (run_id TEXT NOT NULL, name TEXT NOT NULL, value TEXT, kind TEXT NOT NULL, at REAL NOT NULL)")
        db.executemany("INSERT INTO runs (id, notebook, status, started, params) VALUES (?, 'a.ipynb', 'ok', ?, '{}')",
                       [(f"r{i}", float(i)) for i in range(50)])
        db.executemany("INSERT INTO records VALUES (?, 'loss', ?, 'metric', ?)", [(f"r{i % 50}", str(i), float(i)) for i in range(500)])


@pytest.mark.parametrize("step", [2, 4])
def test_a_migration_killed_halfway_leaves_the_store_usable(tmp_path, step):
    "SIGKILL inside the step that adds metric histories (2), or the one that rebuilds the tables in order (4): the step is rolled back whole and done at the next opening."
    import signal
    import subprocess
    import sys
    import textwrap

    _old_store(tmp_path / "runs.db")
    code = textwrap.dedent(f"""
        import os, signal
        from workbench import database, store
        steps = list(database._SQLITE_STEPS)
        real = steps[{step} - 1]
        def dying(db):
            real(db)  # done, not yet committed
            os.kill(os.getpid(), signal.SIGKILL)
        database._SQLITE_STEPS = (*steps[:{step} - 1], dying)
        store.RunStore({str(tmp_path / "runs.db")!r})
    """)
    assert subprocess.run([sys.executable, "-c", code]).returncode == -signal.SIGKILL
    store = RunStore(tmp_path / "runs.db")  # opens, and finishes the migration
    table = store.runs()
    assert len(table) == 50 and table.set_index("id").loc["r7", "value.loss"] == 457  # the last of r7's ten values
    assert store.history("r7", "loss")["value"].tolist() == list(range(7, 500, 50))
    store.record("r7", "loss", 1.0, step=9)
    assert store.records("r7") == {"loss": 1.0}

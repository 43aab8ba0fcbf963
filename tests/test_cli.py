"""The `workbench` command as a shell or CI uses it: exit codes and what it prints."""
import os
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


@pytest.mark.parametrize("first", [
    "import os\nos.environ['LEAKED'] = '1'\nos.chdir('/')\nleaked = 1",  # state a kernel keeps, had it been reused
    "import os\nos._exit(0)",  # a kernel that dies: its template and the next kernel live on
    "import pandas, json\npandas.DataFrame = None\njson.dumps = None",  # modules the template loaded, patched
    "import numpy as np\nfrom workbench.runs import record\nrecord('draw', float(np.random.rand()))",  # global random state
    "import sys\nsys.path.insert(0, '/nowhere')\nsys.modules['pandas'] = None",  # the interpreter's own tables
], ids=["leaves state", "kills its kernel", "patches modules", "draws numbers", "edits sys"])
def test_test_forks_each_notebook_a_kernel_of_its_own(tmp_path, first):
    "One worker, notebooks in order: the second's kernel is forked from the template the first's came from, and sees nothing of it."
    from workbench.store import RunStore

    (tmp_path / "suite").mkdir()
    write_notebook(tmp_path / "suite" / "a_first.ipynb", first)
    write_notebook(tmp_path / "suite" / "b_second.ipynb", "import os, sys, json\nfrom pathlib import Path\n"
                   "assert 'LEAKED' not in os.environ and 'leaked' not in globals() and '/nowhere' not in sys.path\n"
                   "assert Path.cwd().name == 'suite'\n"
                   "import numpy as np, pandas, psutil\nassert pandas.DataFrame is not None and json.dumps is not None\n"
                   "from workbench.runs import current_run, record\nrecord('run', current_run())\nrecord('draw', float(np.random.rand()))\n"
                   "record('forked', '_serve_forks' in ' '.join(psutil.Process().parent().cmdline()))")
    out = workbench("test", tmp_path / "suite", "--workers", "1", "-o", tmp_path / "out", "--store", tmp_path / "runs.db")
    runs = {Path(r["notebook"]).stem: r for r in RunStore(tmp_path / "runs.db").runs().to_dict("records")}
    second = runs["b_second"]
    assert second["status"] == "ok", out.stdout + out.stderr
    assert second["value.run"] == second["id"] and second["value.forked"]  # its own run id, in a kernel forked from the template
    if "draw" in first:
        assert runs["a_first"]["value.draw"] != second["value.draw"]  # not a copy of the template's random state


SET = "SEEN['env'] == 'set'"
CHANGES = {  # a cell that changes what an import reads, and what the module imported after it must have read
    "assigned": ("import os\nos.environ['PROBE'] = 'set'", SET),
    "update": ("import os\nos.environ.update(PROBE='set')", SET),
    "setdefault": ("import os\nos.environ.setdefault('PROBE', 'set')", SET),
    "merged": ("import os\nos.environ |= {'PROBE': 'set'}", SET),
    "from os import environ": ("from os import environ\nenviron['PROBE'] = 'set'", SET),
    "%env": ("%env PROBE=set", SET),
    "sys.path": ("import sys\nsys.path.insert(0, '/marker')", "'/marker' in SEEN['path']"),
    "chdir": ("import os\nos.chdir('..')", "SEEN['cwd'] == os.getcwd()"),
    "%cd": ("%cd ..", "SEEN['cwd'] == os.getcwd()"),
    "inside a function": ("import os\ndef setup():\n    os.environ['PROBE'] = 'set'\nsetup()", SET),
    "no change": ("import os", "SEEN['env'] is None and SEEN['pid'] != os.getpid()"),  # loaded ahead, by the template
    "computed": ("import os\nos.environ['PROBE'] = 'se' + 't'", SET),
}
HOISTED = {"assigned", "update", "from os import environ", "%env", "no change"}  # set first, to a string: the kernel starts with it


@pytest.mark.parametrize("change", CHANGES)
def test_a_module_imported_after_the_notebook_changes_what_it_reads_reads_the_change(tmp_path, change):
    "In one worker, a notebook loads the module first (its template keeps it); the next changes what an import reads, then imports it: it reads the change."
    from workbench.store import RunStore

    cell, check = CHANGES[change]
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "probe.py").write_text("import os, sys\n"
                                               "SEEN = {'env': os.environ.get('PROBE'), 'cwd': os.getcwd(), 'path': list(sys.path), 'pid': os.getpid()}")
    (tmp_path / "suite").mkdir()
    forked = "record('forked', '_serve_forks' in ' '.join(psutil.Process().parent().cmdline()))"
    write_notebook(tmp_path / "suite" / "a_first.ipynb", f"import psutil, probe\nfrom workbench.runs import record\n{forked}")
    write_notebook(tmp_path / "suite" / "b_probe.ipynb", cell,
                   f"import os, psutil\nfrom probe import SEEN\nfrom workbench.runs import record\nrecord('read', {check})\n{forked}")
    env = {k: v for k, v in os.environ.items() if k != "PROBE"} | {"PYTHONPATH": str(tmp_path / "lib"), "XDG_CACHE_HOME": str(tmp_path / "cache")}
    out = workbench("test", tmp_path / "suite", "--workers", "1", "-o", tmp_path / "out", "--store", tmp_path / "runs.db", env=env)
    runs = {Path(r["notebook"]).stem: r for r in RunStore(tmp_path / "runs.db").runs().to_dict("records")}
    assert runs["a_first"]["status"] == runs["b_probe"]["status"] == "ok", out.stdout + out.stderr
    assert runs["a_first"]["value.forked"] and runs["b_probe"]["value.read"], runs
    assert runs["b_probe"]["value.forked"] == (change in HOISTED)  # a notebook that changes what imports read starts cold


def test_a_notebook_forked_again_finds_what_it_loaded_last_time_loaded(tmp_path):
    "Modules a notebook loaded lazily are loaded ahead by the template the next time; its folder's own modules never are."
    import json

    from workbench.store import RunStore

    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "lazy.py").write_text("import os\nPID = os.getpid()")
    (tmp_path / "suite").mkdir()
    (tmp_path / "suite" / "beside.py").write_text("import os\nPID = os.getpid()")
    write_notebook(tmp_path / "suite" / "book.ipynb", "import importlib, os\nfrom workbench.runs import record\n"
                   "record('lazy', importlib.import_module('lazy').PID != os.getpid())\n"
                   "record('beside', importlib.import_module('beside').PID != os.getpid())")
    env = dict(os.environ, PYTHONPATH=str(tmp_path / "lib"), XDG_CACHE_HOME=str(tmp_path / "cache"))
    for i in range(3):
        out = workbench("test", tmp_path / "suite", "--workers", "1", "-o", tmp_path / f"out{i}", "--store", tmp_path / "runs.db", env=env)
        assert out.returncode == 0, out.stdout + out.stderr
    runs = RunStore(tmp_path / "runs.db").runs().sort_values("started")
    assert runs["value.lazy"].tolist() == [False, True, True]  # loaded by the template once the kernel had loaded it
    assert runs["value.beside"].tolist() == [False, False, False]  # the notebook's folder's own: loaded by its kernel
    (learned,) = (tmp_path / "cache" / "workbench" / "loaded").glob("*.json")
    assert "lazy" in json.loads(learned.read_text()) and "beside" not in json.loads(learned.read_text())


@pytest.mark.parametrize("kept, order", [
    ({"a": 1.0, "b": 5.0, "c": 3.0}, "bca"),  # timed: the longest first
    ({"b": 2.0}, "acb"),  # never timed: first, in the order given
    (None, "abc"),  # no file
    ("{not json", "abc"),  # broken
    ([1, 2], "abc"),  # not a mapping
    ({"a": "slow", "b": float("nan"), "c": -1}, "abc"),  # no number of seconds
], ids=["timed", "some timed", "no file", "broken", "a list", "odd values"])
def test_test_starts_the_longest_notebooks_first_and_reports_in_the_order_given(tmp_path, kept, order):
    import json
    import xml.etree.ElementTree as ET

    suite, started = tmp_path / "suite", tmp_path / "started.txt"
    suite.mkdir()
    for name in "abc":
        write_notebook(suite / f"{name}.ipynb", f"with open({str(started)!r}, 'a') as f:\n    f.write({name!r})")
    cache = tmp_path / "cache" / "workbench" / "test-durations.json"
    cache.parent.mkdir(parents=True)
    if kept is not None:
        paths = {str(suite.resolve() / f"{k}.ipynb"): v for k, v in kept.items()} if isinstance(kept, dict) else kept
        cache.write_text(kept if isinstance(kept, str) else json.dumps(paths))
    out = workbench("test", suite, "--workers", "1", "-o", tmp_path / "out", "--junit-xml", tmp_path / "report.xml",
                    env=os.environ | {"XDG_CACHE_HOME": str(tmp_path / "cache")})
    assert out.returncode == 0, out.stdout + out.stderr
    assert started.read_text() == order
    cases = [c.get("name") for c in ET.parse(tmp_path / "report.xml").iter("testcase")]
    assert cases == ["a.ipynb", "b.ipynb", "c.ipynb"], cases  # reported in the order given
    now = json.loads(cache.read_text())
    assert sorted(now) == [str(suite.resolve() / f"{k}.ipynb") for k in "abc"] and all(v >= 0 for v in now.values()), now


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

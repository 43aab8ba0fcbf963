"""Pipelines and sweeps as users run them: in parallel, on Dask, stopped with Ctrl-C, and given bad input."""
import os
import signal
import socket
import time
from pathlib import Path

import pytest

from conftest import WORKBENCH, alive, pipeline_folder, start_until, workbench, write_notebook

from workbench.core import InputError
from workbench.pipeline import Pipeline
from workbench.sweep import sweep
from workbench.store import RunStore



@pytest.fixture
def stages(tmp_path):
    "A folder with small stage notebooks: `stamp` records when it ran and in which process, `scale` reads a file."
    write_notebook(tmp_path / "stamp.ipynb",
                   "import os, time\nfrom pathlib import Path\nfrom workbench.runs import record",
                   "record('start', time.time()); time.sleep(pause)",
                   "record('end', time.time())\nimport psutil\nparent = psutil.Process().parent()  # a worker, or the template it forks kernels from\n"
                   "record('worker', (parent.parent() if '_serve_forks' in ' '.join(parent.cmdline()) else parent).pid)\n"
                   "record('forked', '_serve_forks' in ' '.join(parent.cmdline()))\n"
                   "Path(run_dir, f'{name}.txt').write_text(name)",
                   parameters="run_dir = '.'\nname = 'x'\npause = 0.0")
    write_notebook(tmp_path / "scale.ipynb", "from pathlib import Path\nfrom workbench.runs import record",
                   "record('value', len(Path(data).read_text()) * factor)", parameters="data = ''\nfactor = 1")
    (tmp_path / "p.yaml").write_text(
        "stages:\n"
        "  left: {notebook: stamp.ipynb, params: {name: left, pause: 2.0}, outputs: {file: left.txt}}\n"
        "  right: {notebook: stamp.ipynb, params: {name: right-side, pause: 2.0}, outputs: {file: right-side.txt}}\n"
        "  use: {notebook: scale.ipynb, params: {data: '${right.outputs.file}', factor: 3}}\n")
    return tmp_path


def test_independent_stages_run_at_the_same_time(stages):
    result = Pipeline.from_yaml(stages / "p.yaml").run(out_dir=stages / "out", workers=2, html=False, verbose=False)
    assert result.ok, result
    left, right = result.runs["left"].metrics, result.runs["right"].metrics
    assert left["start"] < right["end"] and right["start"] < left["end"]  # the two intervals overlap
    assert result.runs["use"].metrics == {"value": 30}
    one = Pipeline.from_yaml(stages / "p.yaml").run(out_dir=stages / "one", workers=1, html=False, verbose=False)
    left, right = one.runs["left"].metrics, one.runs["right"].metrics
    assert left["end"] <= right["start"] or right["end"] <= left["start"]  # one worker: one after the other


@pytest.fixture(scope="module")
def cluster():
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, host="127.0.0.1", dashboard_address=None) as cluster, \
            Client(cluster) as client:
        yield cluster.scheduler_address, set(client.run(os.getpid).values())


def test_pipeline_and_sweep_on_a_dask_cluster(stages, cluster):
    address, worker_pids = cluster
    result = Pipeline.from_yaml(stages / "p.yaml").run(out_dir=stages / "out", executor="dask", scheduler=address,
                                                       html=False, verbose=False)
    assert result.ok, result
    assert {r.metrics["worker"] for r in (result.runs["left"], result.runs["right"])} <= worker_pids  # kernels ran there
    assert all(r.metrics["forked"] for r in (result.runs["left"], result.runs["right"]))  # from the worker's template
    assert result.runs["use"].metrics == {"value": 30}
    swept = sweep(stages / "scale.ipynb", {"factor": [1, 2, 3]}, fixed={"data": str(stages / "p.yaml")},
                  metric="value", mode="min", executor="dask", scheduler=address, out_dir=stages / "sweep", verbose=False)
    assert list(swept.table["factor"]) == [1, 2, 3] and swept.best["value"] == len((stages / "p.yaml").read_text())
    recorded = RunStore().runs()
    assert set(recorded.loc[recorded["notebook"].str.endswith("stamp.ipynb"), "pipeline"]) == {result.id}


def test_unreachable_scheduler_is_a_clear_error(stages):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = workbench("run", stages / "p.yaml", "--executor", "dask", "--scheduler", f"tcp://127.0.0.1:{port}",
                     "-o", stages / "out", timeout=60)
    assert out.returncode == 2, out.stdout + out.stderr
    assert f"no Dask scheduler answers at tcp://127.0.0.1:{port}" in out.stderr and "Traceback" not in out.stderr


def test_ctrl_c_stops_kernels_keeps_finished_stages_and_resumes(tmp_path):
    flag = tmp_path / "kernel.pid"
    write_notebook(tmp_path / "quick.ipynb", "from pathlib import Path\nPath(run_dir, 'quick.txt').write_text('done')",
                   parameters="run_dir = '.'")
    write_notebook(tmp_path / "slow.ipynb", "import os, time\nfrom pathlib import Path",
                   f"flag = Path({str(flag)!r})\nif not flag.exists():\n    flag.write_text(str(os.getpid()))\n    time.sleep(300)")
    (tmp_path / "p.yaml").write_text("stages:\n  quick: {notebook: quick.ipynb, outputs: {file: quick.txt}}\n"
                                     "  slow: {notebook: slow.ipynb, depends_on: [quick]}\n")
    cmd = [WORKBENCH, "run", str(tmp_path / "p.yaml"), "-o", str(tmp_path / "out"), "--no-html"]
    proc, kernel = start_until(cmd, flag)
    proc.send_signal(signal.SIGINT)  # what Ctrl-C in a terminal sends (to the command; its workers ignore it)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stdout + stderr
    assert "interrupted" in stderr and "run the same command again to resume" in stderr
    for _ in range(50):
        if not alive(kernel):
            break
        time.sleep(0.2)
    assert not alive(kernel), "the stopped stage's kernel is still running"
    assert (tmp_path / "out" / "quick" / "stage.json").exists()  # the finished stage is kept
    statuses = dict(zip(RunStore().runs()["notebook"].map(lambda p: Path(p).stem), RunStore().runs()["status"]))
    assert statuses == {"quick": "ok", "slow": "interrupted"}

    again = workbench(*cmd[1:])  # the flag exists now: slow finishes at once
    assert again.returncode == 0, again.stdout + again.stderr
    assert "quick  cached" in again.stdout and "slow   ok" in again.stdout


@pytest.mark.parametrize("yaml, message", [
    ("stages:\n  a: {notebook: scale.ipynb\n", "p.yaml, line 3, column 1: YAML syntax error"),
    ("stages:\n  a: {notebook: scale.ipynb, depends_on: b}\n  b: {notebook: scale.ipynb, depends_on: a}\n", "has a cycle"),
    ("stages:\n  a: {notebook: stamp.ipynb}\n  b: {notebook: scale.ipynb, params: {data: '${a.outputs.file}'}}\n",
     "stage 'b', parameter 'data': ${a.outputs.file}: stage 'a' declares no output 'file'"),
    ("stages:\n  a: {notebook: gone.ipynb}\n", "stage 'a': notebook"),
    ("stages:\n  a: {notebook: scale.ipynb, params: {factor: lots}}\n", "declared int"),
    ("stages:\n  a: {notebook: stamp.ipynb, outputs: {f: out/x.txt}}\n  b: {notebook: scale.ipynb, outputs: {g: out//x.txt}}\n",
     "stages 'a' and 'b' both declare the output 'out//x.txt'; give each its own path"),
])
def test_bad_pipelines_exit_2_naming_the_problem(stages, yaml, message):
    (stages / "p.yaml").write_text(yaml)
    out = workbench("run", stages / "p.yaml", "-o", stages / "out")
    assert out.returncode == 2, out.stdout + out.stderr
    assert message in out.stderr and "Traceback" not in out.stderr


@pytest.mark.parametrize("args, message", [
    ([], "a sweep needs a grid"),
    (["-p", "factor=1"], "a sweep needs a grid"),
    (["-p", "factor=1,2", "-p", "nope=1,2"], "has no parameter 'nope'"),
    (["-p", "factor=1,2", "--workers", "0"], "workers must be a whole number"),
])
def test_bad_sweeps_exit_2(stages, args, message):
    out = workbench("sweep", stages / "scale.ipynb", *args, "-o", stages / "sweep")
    assert out.returncode == 2, out.stdout + out.stderr
    assert message in out.stderr and "Traceback" not in out.stderr


def test_failed_stage_exits_1_and_names_stage_and_cell(stages):
    (stages / "p.yaml").write_text("stages:\n  a: {notebook: scale.ipynb, params: {data: missing.txt}}\n"
                                   "  b: {notebook: scale.ipynb, depends_on: a}\n")
    out = workbench("run", stages / "p.yaml", "-o", stages / "out", "--no-html")
    assert out.returncode == 1
    assert "stage 'a' (" in out.stderr and "failed at cell 3: `record('value'" in out.stderr
    assert "FileNotFoundError" in out.stderr and "upstream stage 'a' failed" in out.stdout


def test_references_in_pipeline_params_and_inside_lists_add_their_dependency(tmp_path):
    write_notebook(tmp_path / "make.ipynb", "from pathlib import Path\nfrom workbench.runs import record",
                   "Path(run_dir, 'data.txt').write_text('abcd')\nrecord('rows', 4)", parameters="run_dir = '.'")
    write_notebook(tmp_path / "use.ipynb", "from pathlib import Path\nfrom workbench.runs import record",
                   "record('total', len(Path(data).read_text()) + sum(extra))", parameters="data = ''\nextra = [0]")
    (tmp_path / "p.yaml").write_text(
        "params: {data: '${make.outputs.data}'}\n"  # a pipeline-level reference, given to the stage that declares data
        "stages:\n"
        "  use: {notebook: use.ipynb, params: {extra: ['${make.metrics.rows}', 10]}}\n"  # inside a list
        "  make: {notebook: make.ipynb, outputs: {data: data.txt}}\n")
    pipeline = Pipeline.from_yaml(tmp_path / "p.yaml")
    assert pipeline.order() == ["make", "use"] and pipeline.stages["use"].depends_on == ["make"]
    result = pipeline.run(out_dir=tmp_path / "out", html=False, verbose=False)
    assert result.ok and result.runs["use"].metrics == {"total": 4 + 4 + 10}, result
    out = workbench("run", tmp_path / "p.yaml", "-o", tmp_path / "out", "-p", "extra=['${use.metrics.total}']")
    assert out.returncode == 2 and "stage 'use' does not run before" in out.stderr and "Traceback" not in out.stderr


def test_cache_ignores_a_resave_and_follows_code_and_outputs(tmp_path):
    import nbformat

    pipeline_folder(tmp_path)  # prepare writes n.txt, use reads it; alone stands apart
    (tmp_path / "p.yaml").write_text((tmp_path / "flow.yaml").read_text() + "  alone: {notebook: alone.ipynb}\n")

    def run():
        result = Pipeline.from_yaml(tmp_path / "p.yaml").run(out_dir=tmp_path / "out", html=False, verbose=False)
        return {name: r.status for name, r in result.runs.items()}

    assert run() == {"prepare": "ok", "use": "ok", "alone": "ok"}
    nb = nbformat.read(tmp_path / "prepare.ipynb", as_version=4)  # saved again in JupyterLab: outputs, counts, metadata
    nb.cells[2].outputs = [nbformat.v4.new_output("stream", text="done\n")]
    nb.cells[2].execution_count, nb.metadata["widgets"] = 3, {"state": {}}
    nbformat.write(nb, tmp_path / "prepare.ipynb")
    assert run() == {"prepare": "cached", "use": "cached", "alone": "cached"}
    nb.cells[2].source = "Path(run_dir, 'n.txt').write_text(str(n + 1))"  # its code: it and its reader run again
    nbformat.write(nb, tmp_path / "prepare.ipynb")
    assert run() == {"prepare": "ok", "use": "ok", "alone": "cached"}
    (tmp_path / "out" / "n.txt").unlink()  # a deleted output: its stage runs again, its reader sees the same bytes
    assert run() == {"prepare": "ok", "use": "cached", "alone": "cached"}


@pytest.mark.parametrize("group", [False, True], ids=["runner", "process-group"])
def test_sigterm_stops_kernels_and_leaves_no_running_row(tmp_path, group):
    flag = tmp_path / "kernel.pid"
    write_notebook(tmp_path / "slow.ipynb", "import os, time\nfrom pathlib import Path",
                   f"Path({str(flag)!r}).write_text(str(os.getpid()))\ntime.sleep(300)")
    (tmp_path / "p.yaml").write_text("stages:\n  slow: {notebook: slow.ipynb}\n")
    store = tmp_path / "runs.db"
    cmd = [WORKBENCH, "run", str(tmp_path / "p.yaml"), "-o", str(tmp_path / "out"), "--no-html", "--store", str(store)]
    proc, kernel = start_until(cmd, flag, start_new_session=True)
    if group:  # a cancelled CI job: every process of the job gets it
        os.killpg(proc.pid, signal.SIGTERM)
    else:
        proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM, stdout + stderr
    assert "Traceback" not in stderr
    time.sleep(1)
    assert not alive(kernel)
    statuses = set(RunStore(store).runs()["status"])
    assert "running" not in statuses and statuses == {"interrupted"}, statuses


def test_declared_inputs_join_the_key(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "a.csv").write_text("1\n2\n")
    (tmp_path / "vocab.txt").write_text("x y")
    write_notebook(tmp_path / "count.ipynb", "import glob\nfrom workbench.runs import record",
                   "record('rows', sum(len(open(f).read().split()) for f in glob.glob('data/*.csv')))")
    write_notebook(tmp_path / "words.ipynb", "from workbench.runs import record", "record('words', len(open('vocab.txt').read().split()))")
    write_notebook(tmp_path / "after.ipynb", "from workbench.runs import record", "record('total', rows)", parameters="rows = 0")
    (tmp_path / "p.yaml").write_text("stages:\n  count: {notebook: count.ipynb, inputs: 'data/*.csv'}\n"
                                     "  words: {notebook: words.ipynb, inputs: [vocab.txt]}\n"
                                     "  after: {notebook: after.ipynb, params: {rows: '${count.metrics.rows}'}}\n")

    def run():
        result = Pipeline.from_yaml(tmp_path / "p.yaml").run(out_dir=tmp_path / "out", html=False, verbose=False)
        assert result.ok, result
        return {name: r.status for name, r in result.runs.items()}

    assert run() == {"count": "ok", "words": "ok", "after": "ok"}
    assert run() == {"count": "cached", "words": "cached", "after": "cached"}
    (tmp_path / "data" / "b.csv").write_text("3\n")  # a new file the glob matches: count, and what uses its value
    assert run() == {"count": "ok", "words": "cached", "after": "ok"}
    (tmp_path / "vocab.txt").write_text("x y z")  # an edited input
    assert run() == {"count": "cached", "words": "ok", "after": "cached"}
    (tmp_path / "bad.yaml").write_text("stages:\n  w: {notebook: words.ipynb, inputs: [missing.txt]}\n")
    with pytest.raises(InputError, match="stage 'w': input .*missing.txt matches nothing"):
        Pipeline.from_yaml(tmp_path / "bad.yaml")


def test_an_upgraded_package_runs_its_stage_again(tmp_path, monkeypatch):
    from workbench import cache

    write_notebook(tmp_path / "fit.ipynb", "import numpy")
    write_notebook(tmp_path / "other.ipynb", "x = 1")
    (tmp_path / "p.yaml").write_text("stages:\n  fit: {notebook: fit.ipynb, packages: [numpy]}\n  other: {notebook: other.ipynb}\n")
    run = lambda: {n: r.status for n, r in Pipeline.from_yaml(tmp_path / "p.yaml").run(
        out_dir=tmp_path / "out", html=False, verbose=False).runs.items()}
    assert run() == {"fit": "ok", "other": "ok"} and run() == {"fit": "cached", "other": "cached"}
    real = cache.version
    monkeypatch.setattr(cache, "version", lambda name: "99.0" if name == "numpy" else real(name))  # numpy upgraded
    assert run() == {"fit": "ok", "other": "cached"}
    (tmp_path / "bad.yaml").write_text("stages:\n  fit: {notebook: fit.ipynb, packages: [nump]}\n")
    with pytest.raises(InputError, match="package 'nump' is not installed"):
        Pipeline.from_yaml(tmp_path / "bad.yaml")


def test_runs_in_threads_of_one_dask_worker_stay_apart(tmp_path):
    "Four stages at once in one worker process with four threads: each kernel gets its own run id, store and folder."
    from distributed import LocalCluster

    stages = []
    for i in range(4):
        (tmp_path / f"s{i}").mkdir()
        write_notebook(tmp_path / f"s{i}" / "who.ipynb", "import os, time\nfrom workbench.runs import record",
                       "time.sleep(2)  # the four overlap\nrecord('run_id', os.environ['WORKBENCH_RUN_ID'])\n"
                       "record('cwd', os.getcwd())")
        stages.append(f"  s{i}: {{notebook: s{i}/who.ipynb}}\n")
    (tmp_path / "p.yaml").write_text("stages:\n" + "".join(stages))
    with LocalCluster(n_workers=1, threads_per_worker=4, processes=True, host="127.0.0.1", dashboard_address=None) as cluster:
        result = Pipeline.from_yaml(tmp_path / "p.yaml").run(
            out_dir=tmp_path / "out", workers=4, executor="dask", scheduler=cluster.scheduler_address, html=False,
            verbose=False)
    assert result.ok, result
    for name, run in result.runs.items():
        assert run.metrics["run_id"] == run.id, (name, run.metrics)
        assert run.metrics["cwd"] == str((tmp_path / name).resolve()), (name, run.metrics)
    starts = sorted(r.duration for r in result.runs.values())
    assert result.duration < sum(starts), "the stages did not overlap"

"""A team across hosts: network namespaces on this machine (tests/hosts.py) stand for a team's machines. PostgreSQL and
the S3 endpoint live on `store`; the others reach them only by that host's address. Two serving replicas follow an
alias moved from another host under load; a pipeline's stages run on Dask workers on two hosts; two hosts tune one
study. Where this machine cannot make network namespaces, the module says why and skips."""
import os
import shutil
from pathlib import Path

import numpy as np
import optuna
import pytest
import torch
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from torch import nn

from conftest import write_notebook
from hosts import WORKBENCH, Hosts, Team, follow_alias, why_not
from workbench.export import export, load
from workbench.registry import models, promote, register
from workbench.store import RunStore
from workbench.tune import _storage

pytestmark = [pytest.mark.hosts, pytest.mark.xdist_group("hosts")]  # one set of hosts at a time
if (reason := why_not()) is not None:
    pytest.skip(reason, allow_module_level=True)


@pytest.fixture(scope="module")
def hosts():
    made = Hosts("store", "one", "two", "load")
    try:
        yield made
    finally:
        made.down()


@pytest.fixture(scope="module")
def team(hosts):
    shared = Team(hosts, "store")
    try:
        yield shared
    finally:
        shared.stop()


@pytest.fixture
def env(team, monkeypatch):
    "This test's store and bucket on the store host, set here too: the test process is a team member as well."
    fresh = team.fresh()
    for key, value in fresh.items():
        monkeypatch.setenv(key, value)
    return fresh


def test_two_replicas_follow_an_alias_moved_on_another_host_under_load(hosts, env, tmp_path):
    x = np.array([[0.5, -1.0, 2.0, 0.0]], np.float32)
    for seed in (0, 1):
        torch.manual_seed(seed)
        register(export(nn.Linear(4, 1).eval(), torch.randn(8, 4), tmp_path / f"v{seed}", name="scorer", formats=["onnx"]).path)
    promote("scorer", 1, "production")
    expected = {str(v): np.ravel(load(f"models:/scorer/{v}").predict(x)) for v in (1, 2)}
    shutil.rmtree(os.environ["WORKBENCH_ARTIFACT_CACHE"], ignore_errors=True)
    seen = follow_alias(hosts, env, tmp_path, watch=1.0)
    rows, delays = seen["rows"], seen["delays"]
    assert rows and all(status == 200 for _, _, status, _, _ in rows), [r for r in rows if r[2] != 200][:5]  # 0 errors, 0 non-2xx
    for url, delay in delays.items():
        answers = [(version, answer) for start, u, _, version, answer in sorted(rows) if u == url]
        versions = [v for v, _ in answers]
        assert versions[0] == "1" and versions[-1] == "2" and versions == sorted(versions), url  # 1 until the swap, then 2 only
        assert all(np.allclose(np.ravel(answer), expected[version], atol=1e-5) for version, answer in answers)
        assert delay < 1.0 + 10, delays  # the watch interval, and the time to fetch and check the new version


PIPELINE_STAGE = ("import os\nfrom sklearn.linear_model import LogisticRegression\nfrom sklearn.datasets import load_iris\n"
                  "from workbench.export import export\nfrom workbench.runs import record\n"
                  "X, y = load_iris(return_X_y=True, as_frame=True)\n"
                  "model = LogisticRegression(max_iter=300, C=c).fit(X, y)\n"
                  "export(model, X.head(5), f'bundle-{name}', name=name, overwrite=True)\n"
                  "record('host', int(os.environ['WB_HOST']))\nrecord('accuracy', model.score(X, y))")


def test_a_pipeline_on_dask_workers_of_two_hosts_records_into_the_one_store(hosts, env, tmp_path):
    store, addr = hosts["store"], f"tcp://{hosts['store'].ip}:8786"
    write_notebook(tmp_path / "fit.ipynb", PIPELINE_STAGE, parameters="c = 1.0\nname = 'iris'")
    stages = "".join(f"  fit{i}: {{notebook: fit.ipynb, params: {{c: {c}, name: iris{i}}}}}\n" for i, c in enumerate((0.1, 0.3, 1.0, 3.0)))
    (tmp_path / "p.yaml").write_text("stages:\n" + stages)
    dask = str(Path(WORKBENCH).parent / "dask")
    started = [store.popen([dask, "scheduler", "--host", store.ip, "--port", 8786, "--no-dashboard"], env, tmp_path / "scheduler.log")]
    try:
        for name in ("one", "two"):
            host = hosts[name]
            started.append(host.popen([dask, "worker", addr, "--host", host.ip, "--nthreads", 1, "--no-dashboard", "--no-nanny"],
                                      {**env, "WB_HOST": host.ip.rsplit(".", 1)[1], "WORKBENCH_ARTIFACT_CACHE": str(tmp_path / f"cache-{name}")},
                                      tmp_path / f"worker-{name}.log"))
        done = hosts["load"].run([WORKBENCH, "run", tmp_path / "p.yaml", "-o", tmp_path / "out", "--executor", "dask", "--scheduler",
                                  addr, "--no-html"], env, timeout=600)  # the command on a host of its own, as a laptop would
        assert done.returncode == 0, done.stdout + done.stderr + "".join((tmp_path / f"worker-{n}.log").read_text()[-2000:] for n in ("one", "two"))
    finally:
        for process in started:
            process.terminate()
    runs = RunStore().runs()
    stage_runs = runs[runs["notebook"].str.endswith("fit.ipynb")]
    assert len(stage_runs) == 4 and set(stage_runs["status"]) == {"ok"} and stage_runs["pipeline"].nunique() == 1
    hosts_seen = {int(RunStore().records(run)["host"]) for run in stage_runs["id"]}
    assert hosts_seen == {int(hosts[n].ip.rsplit(".", 1)[1]) for n in ("one", "two")}, hosts_seen  # both hosts worked
    registered = models()
    assert sorted(registered["name"]) == [f"iris{i}" for i in range(4)]
    assert all(path.startswith(env["WORKBENCH_ARTIFACTS"] + "/bundles/") for path in registered["path"])  # into the one bucket
    shutil.rmtree(os.environ["WORKBENCH_ARTIFACT_CACHE"], ignore_errors=True)  # this host has none of it yet
    X, y = load_iris(return_X_y=True, as_frame=True)
    assert (np.ravel(load("models:/iris3/1").predict(X)) == LogisticRegression(max_iter=300, C=3.0).fit(X, y).predict(X)).all()


SCORE = ("import os\nfrom workbench.runs import record\n"
         "record('host', int(os.environ['WB_HOST']))\nrecord('score', -(x - 0.3) ** 2)")


def test_two_hosts_tuning_one_study_share_its_trials(hosts, env, tmp_path):
    nb = write_notebook(tmp_path / "score.ipynb", SCORE, parameters="x = 0.0")
    tuners = {name: hosts[name].popen([WORKBENCH, "tune", nb, "-p", "x=uniform:0:1", "--metric", "score", "--trials", 10, "-n", 1,
                                       "--study", "shared", "--seed", i, "-o", tmp_path / name],
                                      {**env, "WB_HOST": hosts[name].ip.rsplit(".", 1)[1]}, tmp_path / f"tune-{name}.log")
              for i, name in enumerate(("one", "two"))}
    for name, process in tuners.items():
        assert process.wait(600) == 0, (tmp_path / f"tune-{name}.log").read_text()[-3000:]
    study = optuna.load_study(study_name="shared", storage=_storage(RunStore()))
    numbers = [t.number for t in study.trials]
    finished = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(numbers) == len(set(numbers)) and len(finished) >= 10, numbers  # no trial number given twice
    hosts_seen = {int(RunStore().records(r)["host"]) for r in RunStore().runs()["id"]}
    assert hosts_seen == {int(hosts[n].ip.rsplit(".", 1)[1]) for n in ("one", "two")}
    assert study.best_value == max(t.value for t in finished)  # one best, of both hosts' trials

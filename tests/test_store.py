"""The store on both of its databases: a SQLite file and a real PostgreSQL server (the `postgres` fixture starts one).

The same tests run on both (`both_stores`): what a run, a version, an alias and a decision are must not depend on where
they are kept. Then what is PostgreSQL's own: 16 writers at once (registrations, racing promotes, runs recording 100
values each), a password that never shows, a server that does not answer, and a whole history copied to PostgreSQL and
back, checked by counts and digests.
"""
import multiprocessing
import os

import pytest

from conftest import PG_PASSWORD, new_database, workbench
from workbench.core import InputError
from workbench.store import RunStore, copy_store

pytestmark = [pytest.mark.both_stores, pytest.mark.xdist_group("store")]


def test_a_run_its_values_and_their_history(run_store):
    store = RunStore()
    store.start("r1", "train.ipynb", {"lr": 0.1}, pipeline="sweep-1")
    for epoch, loss in enumerate([0.9, 0.5, 0.3], start=1):
        store.record("r1", "loss", loss, step=epoch)
    store.record("r1", "model", "runs/r1/model.onnx", kind="artifact")
    store.finish("r1", "ok", 2.5)
    assert store.records("r1") == {"loss": 0.3, "model": "runs/r1/model.onnx"}
    assert store.history("r1", "loss")[["step", "value"]].values.tolist() == [[1, 0.9], [2, 0.5], [3, 0.3]]
    seen = store.steps("r1", "loss")[0][0]
    assert [v for _, _, v in store.steps("r1", "loss", after=seen)] == [0.5, 0.3]
    row = store.runs().iloc[0]
    assert (row["id"], row["status"], row["param.lr"], row["value.loss"]) == ("r1", "ok", 0.1, 0.3)
    assert store.newest_of("sweep-1") == "r1" and [r[0] for r in store.pipeline_runs("r1")] == ["r1"]
    assert store.paths_of({"r1"}) == {"runs/r1/model.onnx"}


def test_versions_aliases_and_decisions(run_store):
    store = RunStore()
    assert [store.add_version("digits", f"/m/{i}", f"d{i}") for i in range(3)] == [1, 2, 3]
    assert store.set_alias("digits", "production", 2) is None and store.set_alias("digits", "production", 3) == 2
    assert store.version("digits", "production")["version"] == 3 and store.version("digits", "latest")["path"] == "/m/2"
    assert store.alias_history("digits")["previous"].tolist()[1] == 2
    store.add_decision("digits", 3, "production", 2, True, "shown better", {"p_value": 0.004})
    assert store.decisions("digits")[0][:4] == (3, "production", 2, True)
    with pytest.raises(InputError, match="has no version '9': versions 1..3, aliases production -> 3"):
        store.version("digits", 9)
    assert store.aliased_paths() == {"/m/2"}


def test_a_runner_that_died_is_marked_interrupted(run_store):
    import subprocess

    store = RunStore()
    gone = subprocess.Popen(["true"])
    gone.wait()
    store.start("dead", "nb.ipynb", {})
    store._transaction(lambda c: c.execute(__import__("workbench.database", fromlist=["runs"]).runs.update().values(pid=gone.pid)))
    assert RunStore().runs().set_index("id").loc["dead", "status"] == "interrupted"


def _writer(location: str, i: int) -> list:
    "One of 16 processes: registers versions, promotes, or records 100 values, as its number says; what it did."
    os.environ["PGPASSWORD"] = PG_PASSWORD
    store, done = RunStore(location), []
    if i % 3 == 0:
        done += [("version", store.add_version("race", f"/p/{i}", "digest")) for _ in range(10)]
    elif i % 3 == 1:
        done += [("moved", store.set_alias("base", "production", 1 + (i + k) % 3)) for k in range(10)]
    else:
        store.start(f"run-{i}", "nb.ipynb", {})
        for k in range(100):
            store.record(f"run-{i}", "x", k, step=k)
        done.append(("values", len(store.history(f"run-{i}", "x"))))
    return done


def test_sixteen_writers_at_once_lose_nothing(run_store):
    store = RunStore()
    for _ in range(3):
        store.add_version("base", "/b", "digest")
    with multiprocessing.get_context("spawn").Pool(16) as pool:
        done = [d for part in pool.starmap(_writer, [(store.location, i) for i in range(16)]) for d in part]
    versions = sorted(v for what, v in done if what == "version")
    assert versions == list(range(1, 61))  # 6 writers x 10: each number once, none skipped
    assert [v for what, v in done if what == "values"] == [100] * 5
    moves = RunStore().alias_history("base")
    assert len(moves) == 50 and all(moves["previous"].iloc[k] == moves["version"].iloc[k - 1] for k in range(1, 50))  # no move lost


def _holder(location: str, i: int) -> tuple:
    "One of 4 processes: holds the store's lock 'demo' for 0.3 s; when it held it."
    import time

    os.environ["PGPASSWORD"] = PG_PASSWORD
    store = RunStore(location)
    with store.exclusively("demo"):
        start = time.time()
        time.sleep(0.3)
        return start, time.time()


def test_work_that_must_run_once_at_a_time_does_across_processes(run_store):
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        held = sorted(pool.starmap(_holder, [(RunStore().location, i) for i in range(4)]))
    assert all(later[0] >= earlier[1] for earlier, later in zip(held, held[1:])), held  # never two at once


def test_a_store_copied_to_the_other_database_and_back_is_the_same(run_store, postgres, tmp_path, monkeypatch):
    store = RunStore()
    store.start("r1", "nb.ipynb", {"a": 1})
    store.record("r1", "acc", 0.9, step=1)
    store.finish("r1", "ok", 1.0)
    store.add_version("m", "/m/1", "d1", run_id="r1", files={"model.onnx": "ab" * 32})
    store.set_alias("m", "production", 1)
    store.add_decision("m", 1, "production", 1, False, "nothing new", {})
    monkeypatch.setenv("PGPASSWORD", PG_PASSWORD)
    other = tmp_path / "other.db" if str(run_store).startswith("postgresql") else new_database(postgres)
    out = workbench("store", "copy", run_store, other)
    assert out.returncode == 0 and "copied, and checked by counts and digests: 1 runs, 1 records" in out.stdout, out.stdout + out.stderr
    back = tmp_path / "back.db"
    assert copy_store(other, back)["alias_history"] == 1
    copied = RunStore(back)
    assert copied.version("m", "production")["files"] == {"model.onnx": "ab" * 32} and copied.history("r1", "acc")["value"].tolist() == [0.9]
    again = workbench("store", "copy", run_store, other)
    assert again.returncode == 2 and "is not empty (1 runs, 1 models): copy into a new store" in again.stderr


@pytest.mark.parametrize("run_store", ["postgresql"], indirect=True)
def test_a_password_never_shows_and_a_server_that_does_not_answer_says_so(run_store, postgres, monkeypatch):
    with_password = str(run_store).replace("@", f":{PG_PASSWORD}@", 1)
    store = RunStore(with_password)
    assert PG_PASSWORD not in repr(store) and PG_PASSWORD not in store.where
    monkeypatch.setenv("PGPASSWORD", "wrong")
    with pytest.raises(InputError) as wrong:
        RunStore(str(run_store) + "x")  # another database, the wrong password
    assert "wrong" not in str(wrong.value) and "password" in str(wrong.value)
    listed = workbench("runs", "--store", with_password.rsplit(":", 1)[0] + ":1/nothing")  # a port nobody listens on
    assert listed.returncode == 2 and "cannot be used" in listed.stderr and PG_PASSWORD not in listed.stderr + listed.stdout
    assert "Traceback" not in listed.stderr

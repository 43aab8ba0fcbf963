"""`workbench tune` on notebooks with a known best: it finds it, prunes bad trials, continues after Ctrl-C, and says why."""
import math
import signal
import subprocess
import time

import nbformat
import optuna
import pytest

from conftest import ROOT, WORKBENCH, workbench
from workbench.notebooks import make_notebook
from workbench.store import RunStore
from workbench.tune import _storage, tune

pytestmark = pytest.mark.both_stores  # each test on a SQLite store and on a PostgreSQL one

SCORE = ("import math, time\nfrom workbench.runs import record\n"
         "for epoch in range(1, epochs + 1):\n"
         "    value = (1 - (math.log10(lr) + 2) ** 2 / 4 - ((width - 64) / 64) ** 2) * (1 - 0.5 ** epoch)\n"
         "    record('score', round(value, 6), step=epoch)\n"
         "    time.sleep(pause)\n"
         "record('score', round(value, 6))")


def _notebook(folder, code=SCORE):
    "A notebook whose score peaks at lr = 0.01 and width = 64, and grows with each epoch."
    path = folder / "score.ipynb"
    nbformat.write(make_notebook(code, params_cell="lr = 0.001\nwidth = 32\nepochs = 4\npause = 0.0"), path)
    return path


def test_a_search_does_at_least_as_well_as_the_grid_of_its_size(tmp_path):
    nb = _notebook(tmp_path)
    lrs = [f"{10 ** e:.6g}" for e in (-4, -8 / 3, -4 / 3, 0)]  # four log-spaced values over the range, and four widths
    grid = workbench("sweep", nb, "-p", f"lr={','.join(lrs)}", "-p", "width=8,48,88,128", "--metric", "score", "-o", tmp_path / "grid")
    assert grid.returncode == 0, grid.stderr
    best_grid = max(RunStore().runs()["value.score"])
    out = workbench("tune", nb, "-p", "lr=loguniform:1e-4:1", "-p", "width=int:8:128", "--metric", "score", "--trials", "16",
                    "--seed", "0", "--pruner", "none", "-o", tmp_path / "search")
    assert out.returncode == 0, out.stderr
    best = optuna.load_study(study_name="score-score", storage=_storage(RunStore())).best_value
    assert best >= best_grid, (best, best_grid)
    assert "best score" in out.stdout and "params:\n  lr: " in out.stdout and (tmp_path / "search" / "tune.html").exists()


def test_bad_trials_are_pruned_and_recorded_so(tmp_path):
    nb = _notebook(tmp_path)
    result = tune(nb, {"lr": "loguniform:1e-4:1"}, "score", params={"epochs": 8, "pause": 0.4, "width": 64}, trials=8, workers=2,
                  seed=3, out_dir=tmp_path / "search", verbose=False)
    table = result.table()
    pruned = table[table["state"] == "pruned"]
    assert len(pruned) >= 1, table
    runs = RunStore().runs().set_index("id")
    assert set(runs.loc[pruned["run_id"], "status"]) == {"pruned"}
    last_steps = [RunStore().history(run_id, "score")["step"].max() for run_id in pruned["run_id"]]
    assert min(last_steps) < 8, last_steps  # stopped before its last epoch (by steps: times vary with the machine's load)


def test_ctrl_c_stops_the_trials_and_the_same_command_continues(tmp_path):
    nb = _notebook(tmp_path)
    command = [WORKBENCH, "tune", nb, "-p", "lr=loguniform:1e-4:1", "-p", "pause=1.0", "--metric", "score", "--trials", "4",
               "--pruner", "none", "-o", tmp_path / "search"]
    proc = subprocess.Popen(list(map(str, command)), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not [r for r in RunStore().runs().to_dict("records") if r["status"] == "running"] and time.monotonic() < deadline:
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "run the same command again to continue" in err, err
    study = optuna.load_study(study_name="score-score", storage=_storage(RunStore()))
    assert not [t for t in study.trials if t.state.name == "RUNNING"]
    assert "running" not in set(RunStore().runs()["status"])
    again = workbench(*command[1:], timeout=300)
    assert again.returncode == 0, again.stderr
    study = optuna.load_study(study_name="score-score", storage=_storage(RunStore()))
    assert len([t for t in study.trials if t.state.name in ("COMPLETE", "PRUNED", "FAIL")]) == 4


@pytest.mark.parametrize("args, message", [
    (["-p", "depth=int:1:4"], "declares no parameter 'depth'"),
    (["-p", "width=uniform:8:128"], "does not fit its declared type int"),
    (["-p", "lr=normal:0:1"], "not a range"),
    (["-p", "width=64"], "give a space to search"),
    (["-p", "lr=loguniform:1e-4:1", "--trials", "0"], "trials must be a whole number >= 1"),
    (["-p", "lr=loguniform:1e-4:1", "--at", "first"], "'last', 'best' or a step number >= 0, not 'first'"),
    (["-p", "lr=loguniform:1e-4:1", "--at", "-1"], "'last', 'best' or a step number >= 0, not '-1'"),
    (["-p", "lr=loguniform:1e-4:1", "--at", "1.5"], "'last', 'best' or a step number >= 0, not '1.5'"),
])
def test_bad_spaces_exit_2_before_any_kernel(tmp_path, args, message):
    out = workbench("tune", _notebook(tmp_path), *args, "--metric", "score")
    assert out.returncode == 2 and message in out.stderr and "Traceback" not in out.stderr, out.stderr
    assert RunStore().runs().empty


def test_trials_without_the_metric_fail_alone_and_a_notebook_that_never_has_it_stops(tmp_path):
    some = _notebook(tmp_path, SCORE.replace("record('score', round(value, 6))", "if lr > 0.01:\n    record('score', round(value, 6))")
                     .replace("record('score', round(value, 6), step=epoch)", "pass"))
    result = tune(some, {"lr": "loguniform:1e-4:1"}, "score", trials=6, workers=2, seed=0, pruner="none", out_dir=tmp_path / "some",
                  verbose=False)
    states = result.table()["state"].value_counts().to_dict()
    assert states.get("complete", 0) >= 1 and states.get("fail", 0) >= 1
    assert "never recorded 'score'" in result.table().dropna(subset=["reason"])["reason"].iloc[0]
    nan = _notebook(tmp_path, "from workbench.runs import record\nrecord('score', float('nan'))")
    out = workbench("tune", nan, "-p", "lr=loguniform:1e-4:1", "--metric", "score", "--trials", "10", "--study", "nan", "-o", tmp_path / "nan")
    assert out.returncode == 1 and "trials failed, none has a value" in out.stderr and "recorded score as nan or none" in out.stderr.lower(), out.stderr


def test_the_demo_cnn_notebook_is_tuned_with_smoke_settings(tmp_path):
    out = workbench("tune", ROOT / "nbs" / "pipelines" / "cnn.ipynb", "-p", "lr=loguniform:1e-3:3e-2", "-p", "smoke=true",
                    "-p", f"run_dir={tmp_path / 'cnn'}", "--metric", "accuracy", "--trials", "3", "--seed", "0", "-o", tmp_path / "search",
                    timeout=600)
    assert out.returncode == 0, out.stderr
    table = (tmp_path / "search" / "tune.csv").read_text().splitlines()
    assert len(table) == 4 and table[1].split(",")[1] == "complete" and 0 < float(table[1].split(",")[2]) <= 1
    assert math.isfinite(float(out.stdout.split("best accuracy ")[1].split(":")[0]))


LOSS = ("from workbench.runs import record\n"  # step 2 recorded twice (the first stands), a NaN at step 3
        "for step, loss in [(1, 4.0), (2, 1.0 + lr), (2, 9.0), (3, float('nan')), (4, 2.0)]:\n"
        "    record('loss', loss, step=step)")


@pytest.mark.parametrize("at, judged", [
    ("last", 2.0), ("best", "1 + lr"), ("2", "1 + lr"), ("4", 2.0),
    ("3", "recorded loss as nan, not a finite number"), ("5", "never recorded 'loss' at step 5 (it recorded steps 1 to 4)"),
])
def test_at_says_which_recorded_value_judges_a_trial(tmp_path, at, judged):
    nb = _notebook(tmp_path, LOSS)
    out = workbench("tune", nb, "-p", "lr=uniform:0:0.5", "--metric", "loss", "--direction", "min", "--at", at, "--trials", "2",
                    "-n", "1", "--pruner", "none", "-o", tmp_path / "search")
    study = optuna.load_study(study_name="score-loss", storage=_storage(RunStore()))
    if isinstance(judged, str) and not judged.startswith("1"):
        assert out.returncode == 1 and judged in out.stderr, out.stderr
        assert {t.state.name for t in study.trials} == {"FAIL"}
        return
    assert out.returncode == 0, out.stderr
    for trial in study.trials:
        want = 1 + trial.params["lr"] if judged == "1 + lr" else judged
        assert trial.state.name == "COMPLETE" and trial.value == want, (trial.value, want)


def test_only_finite_numbers_reach_the_pruner_as_intermediate_values(tmp_path):
    "A step recorded as a bool, NaN or infinity is not a value to prune on: the study sees only the numbers."
    nb = _notebook(tmp_path, "import time\nfrom workbench.runs import record\n"
                   "for step, value in [(1, True), (2, float('nan')), (3, 1.5), (4, float('inf')), (5, False)]:\n"
                   "    record('score', value, step=step)\n"
                   "time.sleep(3)  # the search reads the steps while the trial runs\nrecord('score', 1.5)")
    out = workbench("tune", nb, "-p", "lr=uniform:0:0.5", "--metric", "score", "--trials", "1", "-n", "1", "--pruner", "median",
                    "-o", tmp_path / "search")
    assert out.returncode == 0, out.stderr
    (trial,) = optuna.load_study(study_name="score-score", storage=_storage(RunStore())).trials
    assert trial.intermediate_values == {3: 1.5}, trial.intermediate_values

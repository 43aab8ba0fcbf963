"""Comparing runs and collecting old runs' files, from the command line as a user runs them."""
from pathlib import Path

import nbformat

import pytest

from conftest import workbench
from workbench.notebooks import make_notebook
from workbench.run import run_notebook
from workbench.store import RunStore

pytestmark = pytest.mark.both_stores  # each test on a SQLite store and on a PostgreSQL one


def _runs(folder: Path, lrs=(0.1, 0.3, 0.2)):
    "Runs of one notebook that records a loss per epoch and an accuracy."
    code = ("from workbench.runs import record\nfor epoch in range(1, 4):\n    record('loss', round(1 / (epoch * lr * 10), 4), step=epoch)\n"
            "record('accuracy', round(1 - 0.1 / (lr * 10), 4))")
    nbformat.write(make_notebook(code, params_cell="lr = 0.1"), folder / "fit.ipynb")
    return [run_notebook(folder / "fit.ipynb", {"lr": lr}, out_dir=folder / f"out{i}") for i, lr in enumerate(lrs)]


def test_compare_from_the_command_line(tmp_path):
    runs = _runs(tmp_path)
    out = workbench("runs", "--compare", *[r.id for r in runs], "--metric", "accuracy", "--html", tmp_path / "compare.html")
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[0] == f"runs {runs[1].id}, {runs[2].id}, {runs[0].id}, best accuracy first"
    page = (tmp_path / "compare.html").read_text()
    assert "parallel coordinates" in page and "histories" in page and "background:#fff3b0" in page  # lr differs: marked
    bad = workbench("runs", "--compare", runs[0].id, "nope")
    assert bad.returncode == 2 and "no run with id ['nope']" in bad.stderr


def test_gc_keeps_the_newest_and_what_an_alias_needs(tmp_path):
    import torch
    from torch import nn

    from workbench.export import export
    from workbench.registry import promote, register

    runs = _runs(tmp_path)
    bundle = export(nn.Linear(2, 1), torch.randn(4, 2), tmp_path / "bundle", formats=["onnx"])
    register(bundle.path)
    promote("bundle", 1, "production")
    dry = workbench("runs", "gc", "--keep-last", "1", "--dry-run")
    assert dry.returncode == 0 and "4 files and folders would be deleted" in dry.stdout, dry.stdout
    assert all(Path(r.output).exists() for r in runs)
    done = workbench("runs", "gc", "--keep-last", "1")
    assert done.returncode == 0 and not Path(runs[0].output).exists() and not Path(runs[0].html).exists()
    assert Path(runs[2].output).exists() and (tmp_path / "bundle" / "model.onnx").exists()  # the newest run, the aliased bundle
    assert len(RunStore().runs()) == 3 and RunStore().records(runs[0].id)["accuracy"] == 0.9  # rows and values stay


def test_runs_and_models_copied_to_mlflow(tmp_path, monkeypatch):
    import torch
    from torch import nn

    from workbench.export import export
    from workbench.registry import promote, register

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow's file store, for the test; a team's server in use
    runs = _runs(tmp_path)
    register(export(nn.Linear(2, 1), torch.randn(4, 2), tmp_path / "bundle", formats=["onnx"]).path)
    register(tmp_path / "bundle", name="it's \"quoted\"")  # any name a user gives
    promote("bundle", 1, "production")
    uri = "file://" + str(tmp_path / "mlruns")
    (work := tmp_path / "work").mkdir()
    out = workbench("runs", "export", "--mlflow", uri, cwd=work)
    assert out.returncode == 0 and "3 runs and 2 model versions copied" in out.stdout, out.stderr
    assert "0 runs" in workbench("runs", "export", "--mlflow", uri, cwd=work).stdout  # nothing twice
    assert not list(work.iterdir())  # MLflow's default store (./mlflow.db) is never opened in the working folder
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)  # this client's own helpers would open ./mlflow.db otherwise

    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    assert int(client.get_model_version_by_alias("bundle", "production").version) == 1
    copied = client.search_runs([client.get_experiment_by_name("workbench").experiment_id])
    assert sorted(r.data.tags["workbench.run_id"] for r in copied) == sorted(r.id for r in runs)
    assert int(client.get_model_version("it's \"quoted\"", "1").version) == 1
    took = {r.data.tags["workbench.run_id"]: (r.info.end_time - r.info.start_time) / 1000 for r in copied}
    assert all(abs(took[r.id] - r.duration) < 0.01 for r in runs), (took, [r.duration for r in runs])  # as long as it ran
    assert workbench("runs", "export").returncode == 2

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


def test_exported_to_a_real_mlflow_server_with_the_models_themselves(tmp_path, monkeypatch):
    "A team's MLflow (`mlflow server` on loopback): runs with their times, versions registered from uploaded bundles that load."
    import numpy as np
    import torch
    from mlflow.tracking import MlflowClient
    from torch import nn

    from servers import start_mlflow
    from workbench.export import export, load
    from workbench.registry import promote, register
    from workbench.store import RunStore

    runs = _runs(tmp_path)
    bundle = export(nn.Linear(2, 1), torch.randn(4, 2), tmp_path / "bundle", formats=["onnx"])
    register(bundle.path)
    register(tmp_path / "bundle", name="it's \"quoted\" odd")
    promote("bundle", 1, "production")
    (home := tmp_path / "mlflow").mkdir()
    uri, stop = start_mlflow(home)
    try:
        (work := tmp_path / "work").mkdir()
        out = workbench("runs", "export", "--mlflow", uri, cwd=work)
        assert out.returncode == 0 and "3 runs and 2 model versions copied" in out.stdout, out.stdout + out.stderr
        again = workbench("runs", "export", "--mlflow", uri, cwd=work)
        assert again.returncode == 0 and "0 runs" in again.stdout, again.stdout + again.stderr
        assert not list(work.iterdir())  # MLflow's default store (./mlflow.db) is never opened in the working folder
        assert workbench("runs", "export").returncode == 2  # where to: said, not guessed
        monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)  # this client's own helpers would open ./mlflow.db otherwise
        client = MlflowClient(tracking_uri=uri, registry_uri=uri)
        every = client.search_runs([client.get_experiment_by_name("workbench").experiment_id])
        copied = [r for r in every if "workbench.run_id" in r.data.tags]
        assert sorted(r.data.tags["workbench.run_id"] for r in copied) == sorted(r.id for r in runs)
        assert sorted(r.data.tags.get("workbench.model") for r in every if r not in copied) == ["bundle", "it's \"quoted\" odd"]  # no run made them
        took = {r.data.tags["workbench.run_id"]: (r.info.end_time - r.info.start_time) / 1000 for r in copied}
        assert all(abs(took[r.id] - r.duration) < 0.01 for r in runs)
        store = RunStore()
        for number, name in enumerate(("bundle", "it's \"quoted\" odd")):
            version = client.get_model_version(name, "1")
            assert version.source.startswith("mlflow-artifacts:/") and version.source.endswith(f"/bundle-{store.version(name, 1)['digest'][:12]}")
            with pytest.raises(Exception, match="not found|RESOURCE_DOES_NOT_EXIST"):
                client.get_model_version(name, "2")  # exported twice, registered once
            got = Path(client.download_artifacts(version.run_id, version.source.rsplit("/", 1)[-1], str(tmp_path / f"got{number}")))
            assert (got / "metadata.json").read_bytes() == (bundle.path / "metadata.json").read_bytes()
            assert store.version(name, 1)["digest"] == version.tags["workbench.digest"]
            x = np.random.default_rng(0).normal(size=(3, 2)).astype("float32")
            np.testing.assert_allclose(load(got).predict(x), load(bundle.path).predict(x), rtol=1e-6)  # the model itself, not a path to it
        assert int(client.get_model_version_by_alias("bundle", "production").version) == 1
    finally:
        stop()

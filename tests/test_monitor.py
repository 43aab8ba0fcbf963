"""`monitor` and `workbench monitor` on production data as it arrives: a real server's traffic log, files, messy columns.

The traffic comes from `workbench serve --log-requests` answering real requests; the verdicts must name what was
changed on purpose and nothing when nothing was; `workbench monitor` must exit 1 on drift (a gate) and 0 otherwise.
"""
import json
import signal
import sys
import urllib.request

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.datasets import load_breast_cancer, load_digits
from sklearn.linear_model import LogisticRegression
from torch import nn

from conftest import workbench
from test_serve import _start
from workbench.core import InputError
from workbench.export import export
from workbench.monitor import monitor

pytestmark = pytest.mark.xdist_group("serve")


@pytest.fixture(scope="module")
def cancer(tmp_path_factory):
    "A classifier fitted on a frame, its validation rows as the reference (a Parquet file), and held-out production rows."
    root = tmp_path_factory.mktemp("cancer")
    X, y = load_breast_cancer(return_X_y=True, as_frame=True)
    order = np.random.default_rng(0).permutation(len(X))
    X, y = X.iloc[order].astype("float32").reset_index(drop=True), y.iloc[order].reset_index(drop=True)
    model = LogisticRegression(max_iter=5000).fit(X[:250], y[:250])
    export(model, X.to_numpy()[:16], root / "cancer")
    X[250:400].assign(target=y[250:400].to_numpy()).to_parquet(root / "reference.parquet")
    return root / "cancer", root / "reference.parquet", X[400:], y[400:]


def _serve_and_log(bundle, rows: pd.DataFrame, folder):
    "Send each row to a real server with the traffic log on, one request a row; stop it so the log is written."
    process, url, _ = _start([bundle], "--log-requests", folder, "--no-access-log")
    try:
        for row in rows.to_numpy().tolist():
            request = urllib.request.Request(url + "/predict", data=json.dumps({"inputs": [row]}).encode(), headers={"content-type": "application/json"})
            urllib.request.urlopen(request).read()
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0


def test_a_gate_on_a_real_servers_traffic(cancer, tmp_path):
    bundle, reference, production, _ = cancer
    _serve_and_log(bundle, production, tmp_path / "steady")
    shifted = production.assign(**{"mean texture": production["mean texture"] + 8})
    _serve_and_log(bundle, shifted, tmp_path / "shifted")
    steady = workbench("monitor", bundle, "--reference", reference, "--current", tmp_path / "steady", "--report", tmp_path / "steady.html")
    assert steady.returncode == 0 and steady.stdout.startswith("no drift in 30 features and 2 answers"), steady.stdout + steady.stderr
    drifted = workbench("monitor", bundle, "--reference", reference, "--current", tmp_path / "shifted", "--report", tmp_path / "shifted.html")
    assert drifted.returncode == 1 and "features drifted: mean texture" in drifted.stdout, drifted.stdout + drifted.stderr
    assert "mean texture drift" in (tmp_path / "shifted.html").read_text()  # its two distributions are drawn
    assert "not in the reference, ignored" not in drifted.stdout  # the log's own columns (time, request, answers) are understood


def test_labels_that_arrive_later_check_accuracy(cancer, tmp_path):
    bundle, reference, production, truth = cancer
    _serve_and_log(bundle, production, tmp_path / "log")
    from workbench.traffic import read_traffic

    logged = read_traffic(tmp_path / "log")
    labelled = logged.assign(target=truth.to_numpy()[logged["request"].index])  # one request a row, in order
    right = monitor(reference, labelled, bundle, target="target")
    wrong = monitor(reference, labelled.assign(target=1 - labelled["target"]), bundle, target="target")
    assert right.performance["metric"] == "accuracy" and not right.performance["drift"] and not right.drift
    assert wrong.performance["drift"] and "worse than the reference's" in wrong.verdict


@pytest.mark.parametrize("change, note", [
    (lambda f: f.drop(columns=["mean area"]), "missing from the current data, not compared: mean area"),
    (lambda f: f.assign(source="app"), "not in the reference, ignored: source"),
    (lambda f: f.assign(**{"mean area": f["mean area"].astype(str).where(f.index % 10 > 0, "n/a")}), "mean area: numbers in the reference, "),
])
def test_messy_production_columns_are_notes(cancer, change, note, tmp_path):
    bundle, reference, production, _ = cancer
    from workbench.export import load
    from workbench.protocol import Signature
    from workbench.traffic import TrafficLog, read_traffic

    predictor = load(bundle)
    signature = Signature(predictor.metadata)
    log = TrafficLog(tmp_path / "log")
    log.add("cancer", signature, production.to_numpy(), signature.answers(predictor._run(production.to_numpy())))
    log.close()
    result = monitor(reference, change(read_traffic(tmp_path / "log")), bundle)  # the log's answers: nothing to compute
    assert any(note in n for n in result.notes), result.notes
    assert list(result.answers["column"]) == ["label", "confidence"]
    computed = monitor(reference, change(production), bundle)  # no answers logged: the model is asked, or it is said why not
    assert any(note in n for n in computed.notes), computed.notes
    if "mean area" not in change(production) or change(production)["mean area"].dtype == object:
        assert any("answers on the current data could not be computed" in n for n in computed.notes) and computed.answers.empty


def test_images_drift_by_brightness_and_contrast(tmp_path):
    digits = load_digits()
    images = (digits.images[:, None] / 16).astype(np.float32)
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 10)).eval()
    export(net, torch.from_numpy(images[:8]), tmp_path / "digits", classes=list(range(10)), formats=["onnx"])
    steady = monitor(images[:900], images[900:], tmp_path / "digits")
    faded = monitor(images[:900], images[900:] * 0.5 + 0.4, tmp_path / "digits")
    assert not steady.features["drift"].any() and set(steady.features["column"]) == {"input_mean", "input_std"}
    assert faded.features["drift"].all() and faded.drift


@pytest.mark.parametrize("args, message", [
    (["--current", "{tmp}/none.parquet"], "does not exist"),
    (["--current", "{tmp}/empty.parquet"], "the current data has no rows"),
    (["--current", "{tmp}/notes.txt"], "give a .parquet or .csv file"),
])
def test_bad_input_exits_2(cancer, tmp_path, args, message):
    bundle, reference, production, _ = cancer
    production.iloc[:0].to_parquet(tmp_path / "empty.parquet")
    (tmp_path / "notes.txt").write_text("x")
    out = workbench("monitor", bundle, "--reference", reference, *[a.format(tmp=tmp_path) for a in args])
    assert out.returncode == 2 and message in out.stderr and "Traceback" not in out.stderr, out.stderr
    with pytest.raises(InputError, match="model is a bundle"):
        monitor(reference, production, model=object())


TELL = ("import os, sys; from workbench.traffic import read_traffic; "
        "open(sys.argv[1], 'w').write(os.environ['WORKBENCH_DRIFTED'] + '|' + str(len(read_traffic(os.environ['WORKBENCH_CURRENT']))) "
        "+ '|' + os.environ['WORKBENCH_MODEL'])")


def test_drift_in_a_real_servers_traffic_runs_the_command_given(cancer, tmp_path):
    from workbench.registry import promote, register

    bundle, reference, production, _ = cancer
    promote(register(bundle, "cancer").name, 1, "production")  # monitored through the registry, as it is served
    _serve_and_log(bundle, production, tmp_path / "steady")
    _serve_and_log(bundle, production.assign(**{"mean texture": production["mean texture"] + 8}), tmp_path / "shifted")
    told = tmp_path / "told"
    command = f"{sys.executable} -c \"{TELL}\" {told}"
    quiet = workbench("monitor", "models:/cancer@production", "--reference", reference, "--current", tmp_path / "steady", "--on-drift", command)
    assert quiet.returncode == 0 and not told.exists(), quiet.stdout + quiet.stderr  # no drift: nothing runs
    ran = workbench("monitor", "models:/cancer@production", "--reference", reference, "--current", tmp_path / "shifted", "--on-drift", command)
    assert ran.returncode == 0 and "running:" in ran.stderr, ran.stdout + ran.stderr
    drifted, rows, model = told.read_text().split("|")
    assert "mean texture" in drifted.split(",") and rows == str(len(production)) and model == "models:/cancer@production"
    failed = workbench("monitor", bundle, "--reference", reference, "--current", tmp_path / "shifted", "--on-drift", "exit 7")
    assert failed.returncode == 7 and "failed (exit 7)" in failed.stderr, failed.stderr

"""Serving from the registry: `workbench serve models:/NAME@ALIAS` answers from the version the alias holds and,
when the alias moves, swaps the new version in while clients keep asking, without one failed request. A version
that cannot be served (its files changed since it was registered) is refused while the old one goes on serving.
"""
import concurrent.futures
import json
import threading
import time
import urllib.request

import numpy as np
import pytest
from sklearn.linear_model import LinearRegression

from conftest import tamper_kept
from workbench.core import InputError
from workbench.export import ExportError, export
from workbench.registry import promote, register
from workbench.store import RunStore
from workbench.serve import serve

pytestmark = pytest.mark.xdist_group("serve-registry")


def _constant(value: float, path):
    "A bundle whose model answers `value` for any row: versions are told apart by their answers."
    X = np.random.default_rng(0).normal(size=(50, 3)).astype(np.float32)
    return export(LinearRegression().fit(X, np.full(50, value)), X[:8], path, formats=["onnx"]).path


def _ask(url: str) -> tuple:
    "(status, the version that answered, the answer) of one V2 request."
    body = json.dumps({"inputs": [{"name": "input", "shape": [1, 3], "datatype": "FP32", "data": [0.1, 0.2, 0.3]}]}).encode()
    request = urllib.request.Request(url + "/v2/models/scorer/infer", data=body, headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as r:
            answer = json.loads(r.read())
            return r.status, answer["model_version"], round(answer["outputs"][0]["data"][0], 3)
    except urllib.error.HTTPError as e:
        return e.code, None, None


def test_an_alias_that_moves_is_followed_without_a_failed_request(tmp_path):
    for value in (1.0, 2.0):
        register(_constant(value, tmp_path / f"v{value:.0f}"), name="scorer")
    promote("scorer", 1, "production")
    from workbench.export import load

    assert load("models:/scorer@production").predict(np.zeros((1, 3), np.float32)).tolist() == pytest.approx([1.0])  # MLflow's form too
    server = serve(["models:/scorer@production"], watch_seconds=0.2)
    try:
        assert _ask(server.url) == (200, "1", 1.0)
        answers, stop = [], threading.Event()

        def client():
            while not stop.is_set():
                answers.append(_ask(server.url))

        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            for _ in range(8):
                pool.submit(client)
            time.sleep(1.0)
            promote("scorer", 2, "production")
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and (not answers or answers[-1][1] != "2"):
                time.sleep(0.1)
            time.sleep(1.0)
            stop.set()
        assert len(answers) > 200 and {status for status, _, _ in answers} == {200}, set(answers)
        assert {(v, a) for _, v, a in answers} == {("1", 1.0), ("2", 2.0)}  # each answer from the version that says it gave it
        first_new = next(i for i, (_, v, _) in enumerate(answers) if v == "2")
        assert sum(v == "1" for _, v, _ in answers[first_new + 50:]) == 0  # and once swapped, the new one only
        with urllib.request.urlopen(server.url + "/v2/models/scorer") as r:
            assert json.loads(r.read())["versions"] == ["2"]

        register(_constant(3.0, tmp_path / "v3"), name="scorer")  # a third version, whose kept file is changed after it is registered
        tamper_kept("models:/scorer/3", "model.onnx")
        with pytest.raises(ExportError, match="no longer has the digest"):
            promote("scorer", 3, "production")  # promote checks the files first
        RunStore().set_alias("scorer", "production", 3)  # an alias moved around that check (by hand in SQL, or before the file changed)
        deadline = time.monotonic() + 30
        metrics = ""
        while time.monotonic() < deadline and 'result="failed"' not in metrics:
            time.sleep(0.2)
            with urllib.request.urlopen(server.url + "/metrics") as r:
                metrics = r.read().decode()
        assert 'workbench_model_swaps_total{model="scorer",result="failed"} 1.0' in metrics
        assert 'workbench_model_swaps_total{model="scorer",result="ok"} 1.0' in metrics
        assert _ask(server.url) == (200, "2", 2.0)  # the old version goes on
    finally:
        server.stop()
    assert "version 3 cannot be served, version 2 goes on" in server.log.read_text() and "no longer has the digest" in server.log.read_text()


def test_a_deployed_image_holds_the_version_the_alias_holds(tmp_path):
    from workbench.deploy import deploy

    for value in (1.0, 2.0):
        register(_constant(value, tmp_path / f"v{value:.0f}"), name="scorer")
    promote("scorer", 2, "production")
    deploy(["models:/scorer@production"], target="docker", out=tmp_path / "image")
    copied = json.loads((tmp_path / "image" / "models" / "scorer" / "metadata.json").read_text())
    assert copied == json.loads((tmp_path / "v2" / "metadata.json").read_text())


def test_a_registry_uri_that_names_nothing_is_refused_before_serving(tmp_path):
    register(_constant(1.0, tmp_path / "v1"), name="scorer")
    for uri, message in [("models:/scorer@staging", "has no version 'staging'"), ("models:/nobody@production", "no model named 'nobody'"),
                         ("models:/scorer", "a model URI is")]:
        with pytest.raises(InputError, match=message):
            serve([uri])

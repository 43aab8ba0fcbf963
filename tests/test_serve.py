"""`workbench serve` as a client meets it: a real server process on a free port, asked over HTTP.

One server holds many real models (scikit-learn estimators of many families, fitted on data that ships with
scikit-learn, and torch networks), and each answers over both protocols exactly what `load(bundle).predict` answers.
Every bad request gets a 4xx with a JSON error that says what to fix, and the server keeps serving. Then what a
platform does to a server: a client that disconnects mid-request, 10,000 requests from 64 clients, several worker
processes, SIGTERM with a request in flight, and a bundle changed after export.
"""
import asyncio
import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn import ensemble, linear_model, naive_bayes, neighbors, neural_network, svm
from sklearn.compose import ColumnTransformer
from sklearn.datasets import load_breast_cancer, load_diabetes, load_digits, load_iris
from sklearn.impute import SimpleImputer
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from torch import nn

from conftest import WORKBENCH, workbench
from workbench.export import export, load
from workbench.traffic import read_traffic

pytestmark = [pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning"),
              pytest.mark.xdist_group("serve")]  # one worker builds the models and the server once


def _data(kind: str):
    "Rows to fit on and held-out rows to ask about, float32, from data that ships with scikit-learn."
    loader = {"iris": load_iris, "cancer": load_breast_cancer, "diabetes": load_diabetes}[kind]
    X, y = loader(return_X_y=True)
    order = np.random.default_rng(0).permutation(len(X))
    X, y = X[order].astype(np.float32), y[order]
    return X[30:], y[30:], X[:30]


def _with_codes(X):
    X = X.copy()
    X[:, 0] = np.round(X[:, 0]) % 4  # a small-integer code, as an encoded category would be
    return X


SKLEARN = {  # name: (estimator, data, how the rows are changed)
    "logistic": (linear_model.LogisticRegression(max_iter=2000), "cancer", None),
    "random-forest": (ensemble.RandomForestClassifier(30, random_state=0), "cancer", None),
    "hist-gradient-boosting": (ensemble.HistGradientBoostingClassifier(max_iter=30, random_state=0), "cancer", None),
    "svc": (make_pipeline(StandardScaler(), svm.SVC()), "cancer", None),
    "k-neighbours": (make_pipeline(StandardScaler(), neighbors.KNeighborsClassifier()), "iris", None),
    "gaussian-nb": (naive_bayes.GaussianNB(), "iris", None),
    "mlp": (make_pipeline(StandardScaler(), neural_network.MLPClassifier((32,), max_iter=500, random_state=0)), "iris", None),
    "one-hot": (make_pipeline(ColumnTransformer([("code", OneHotEncoder(handle_unknown="ignore"), [0]),
                                                 ("rest", StandardScaler(), [1, 2, 3])]), linear_model.LogisticRegression()), "iris", _with_codes),
    "ridge": (linear_model.Ridge(), "diabetes", None),
    "gradient-boosting-regressor": (ensemble.GradientBoostingRegressor(n_estimators=30, random_state=0), "diabetes", None),
    "svr": (make_pipeline(StandardScaler(), svm.SVR()), "diabetes", None),
    "imputer-ridge": (make_pipeline(SimpleImputer(), linear_model.Ridge()), "diabetes", None),
    "xgboost": (__import__("xgboost").XGBClassifier(n_estimators=30), "cancer", None),
    "lightgbm-regressor": (__import__("lightgbm").LGBMRegressor(n_estimators=30, verbose=-1), "diabetes", None),
}


def _digits():
    digits = load_digits()
    return (digits.images[:, None] / 16).astype(np.float32), digits.target


def _cnn():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(32, 10)).eval()


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict:
    "name -> (bundle path, held-out rows) for every model: the scikit-learn list, a torch CNN classifier, a torch regressor."
    root = tmp_path_factory.mktemp("bundles")
    out = {}
    for name, (estimator, data, change) in SKLEARN.items():
        X, y, X_new = _data(data)
        X, X_new = (change(X), change(X_new)) if change else (X, X_new)
        if name == "imputer-ridge":
            X[::7, 2], X_new[::3, 2] = np.nan, np.nan  # it takes missing values: they must reach it
        export(estimator.fit(X, y), X[:16], root / name)
        out[name] = (root / name, X_new)
    images, labels = _digits()
    export(_cnn(), torch.from_numpy(images[:8]), root / "cnn", classes=list(range(10)), formats=["onnx"])
    out["cnn"] = (root / "cnn", images[-20:])
    torch.manual_seed(0)
    export(nn.Sequential(nn.Linear(10, 16), nn.Tanh(), nn.Linear(16, 1)).eval(), torch.randn(8, 10), root / "torch-regressor", formats=["onnx"])
    out["torch-regressor"] = (root / "torch-regressor", np.random.default_rng(1).normal(size=(20, 10)).astype(np.float32))
    return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(bundles, *flags, timeout=60):
    "Start `workbench serve`, wait until it is ready; (process, url, log file)."
    port, log = _free_port(), Path(f"/tmp/workbench-serve-test-{os.getpid()}-{time.monotonic_ns()}.log")
    process = subprocess.Popen([WORKBENCH, "serve", *map(str, bundles), "--port", str(port), *map(str, flags)],
                               stdout=log.open("w"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, log.read_text()
        try:
            if urllib.request.urlopen(url + "/v2/health/ready", timeout=1).status == 200:
                return process, url, log
        except OSError:
            time.sleep(0.05)
    process.kill()
    raise AssertionError(f"not ready in {timeout} s: {log.read_text()}")


@pytest.fixture(scope="module")
def server(models, tmp_path_factory):
    "One server of every model, with a small body limit and the traffic log on."
    traffic = tmp_path_factory.mktemp("traffic")
    process, url, log = _start([f"{name}={path}" for name, (path, _) in models.items()], "--max-body", 2**20,
                               "--log-requests", traffic)
    yield url, process, traffic, log
    process.send_signal(signal.SIGTERM)
    process.wait(30)


def call(url, path, body=None, content_type="application/json", method=None, headers=None):
    "(status, headers, parsed body) of one request."
    data = json.dumps(body).encode() if isinstance(body, (dict, list)) else body
    request = urllib.request.Request(url + path, data=data, method=method, headers={"content-type": content_type, **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=30) as r:
            status, head, raw = r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        status, head, raw = e.code, dict(e.headers), e.read()
    return status, head, json.loads(raw) if head.get("content-type", "").startswith("application/json") else raw


def _same(got, want, name):
    if want.dtype.kind in "iuOUb":
        assert np.asarray(got).astype(want.dtype).tolist() == want.tolist(), name
    else:
        np.testing.assert_allclose(np.asarray(got, dtype=np.float64).reshape(want.shape), want, rtol=1e-4, atol=1e-4, err_msg=name)


@pytest.mark.parametrize("name", [*SKLEARN, "cnn", "torch-regressor"])
def test_every_model_answers_as_its_bundle(server, models, name):
    url = server[0]
    path, X_new = models[name]
    predictor = load(path)
    want = predictor.predict(X_new)
    classifier = predictor.metadata.get("task") == "classification"
    labels = np.asarray(predictor.metadata["classes"])[want.argmax(1)] if classifier and predictor.metadata["kind"] == "torch" else want

    status, _, plain = call(url, f"/models/{name}/predict", {"inputs": np.where(np.isnan(X_new), None, X_new).tolist()})
    assert status == 200, plain
    _same(plain["predictions"], labels, name)
    if "probabilities" in plain:
        np.testing.assert_allclose(plain["probabilities"], predictor.predict_proba(X_new), rtol=1e-4, atol=1e-5)

    buffer = io.BytesIO()
    np.save(buffer, X_new)  # the same rows as a .npy body, NaN included
    status, _, npy = call(url, f"/models/{name}/predict", buffer.getvalue(), "application/x-npy")
    assert status == 200 and npy["predictions"] == plain["predictions"]

    tensor = {"name": "input", "shape": list(X_new.shape), "datatype": "FP32", "parameters": {"binary_data_size": X_new.nbytes}}
    head = json.dumps({"id": name, "inputs": [tensor]}).encode()
    status, headers, v2 = call(url, f"/v2/models/{name}/infer", head + X_new.tobytes(), "application/octet-stream",
                               headers={"Inference-Header-Content-Length": str(len(head))})
    assert status == 200 and v2["id"] == name and v2["model_name"] == name, v2
    first = v2["outputs"][0]
    assert first["shape"][0] == len(X_new)
    _same(first["data"], want if predictor.metadata["kind"] == "torch" else labels, name)

    status, _, meta = call(url, f"/v2/models/{name}")
    assert status == 200 and meta["inputs"][0]["shape"] == [-1, *X_new.shape[1:]] and meta["platform"] == "onnxruntime_onnx"
    assert [(o["name"], o["datatype"]) for o in meta["outputs"]] == [(o["name"], o["datatype"]) for o in v2["outputs"]]  # as described


@pytest.mark.parametrize("path, body, content_type, status, message", [
    ("/models/cnn/predict", b"{not json", "application/json", 400, "not valid JSON"),
    ("/models/cnn/predict", {"instances": [[1]]}, "application/json", 400, 'send {"inputs"'),
    ("/models/cnn/predict", {"inputs": [[1, 2, 3]]}, "application/json", 400, r"do not fit the model, which takes [batch, 1, 8, 8]"),
    ("/models/logistic/predict", {"inputs": [["a"] * 30]}, "application/json", 400, "must be numbers"),
    ("/models/logistic/predict", {"inputs": [[1.0] * 29 + [None]]}, "application/json", 400, "row 0 holds NaN or infinity"),
    ("/models/logistic/predict", {"inputs": []}, "application/json", 400, "the batch is empty"),
    ("/models/logistic/predict", np.zeros((0, 30), np.float32), "application/x-npy", 400, "the batch is empty"),
    ("/models/logistic/predict", np.full((2, 30), np.inf, np.float32), "application/x-npy", 400, "row 0 holds NaN or infinity"),
    ("/models/logistic/predict", b"\x93NUMPY broken", "application/x-npy", 400, "not a .npy array"),
    ("/models/nothing/predict", {"inputs": [[1]]}, "application/json", 404, "no model named 'nothing'"),
    ("/predict", {"inputs": [[1]]}, "application/json", 400, "POST /models/NAME/predict"),
    ("/v2/models/logistic/infer", {"inputs": [{"name": "input", "shape": [2, 30], "datatype": "FP32", "data": [0] * 30}]},
     "application/json", 400, "holds 60 values, but its data has 30"),
    ("/v2/models/logistic/infer", {"inputs": [{"name": "x", "shape": [1, 30], "datatype": "FP32", "data": [0] * 30}]},
     "application/json", 400, "unknown input 'x'"),
    ("/v2/models/logistic/infer", {"inputs": [{"name": "input", "shape": [1, 30], "datatype": "STRING", "data": [0] * 30}]},
     "application/json", 400, "datatype 'STRING'"),
    ("/v2/models/logistic/infer", {"inputs": [{"name": "input", "shape": [1, 30], "datatype": "FP32", "data": [0] * 30}],
                                   "outputs": [{"name": "scores"}]}, "application/json", 400, "unknown output 'scores'"),
    ("/v2/models/logistic", None, "application/json", 200, None),
    ("/v2/models/logistic/infer", None, "application/json", 405, "takes POST, not GET"),
    ("/v3/models", None, "application/json", 404, "no endpoint at /v3/models"),
])
def test_bad_requests_get_a_4xx_that_says_what_to_fix(server, path, body, content_type, status, message):
    url = server[0]
    if isinstance(body, np.ndarray):
        buffer = io.BytesIO()
        np.save(buffer, body)
        body = buffer.getvalue()
    got, _, answer = call(url, path, body, content_type)
    assert got == status, answer
    if message:
        assert message in answer["error"], answer
    assert call(url, "/models/logistic/predict", {"inputs": [[0.5] * 30]})[0] == 200  # and the server keeps serving


def _raw(url: str, *parts: bytes) -> tuple[int, dict]:
    "Send `parts` on one connection as they are; the status and JSON body of the answer."
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port))) as s:
        for part in parts:
            s.sendall(part)
        answer = b""
        while b"\r\n\r\n" not in answer or len(answer.split(b"\r\n\r\n", 1)[1]) < int(answer.lower().split(b"content-length: ")[1].split(b"\r\n")[0]):
            answer += s.recv(65536)
    head, body = answer.split(b"\r\n\r\n", 1)
    return int(head.split()[1]), json.loads(body)


def test_a_body_over_the_limit_is_refused_before_it_is_read(server):
    "A Content-Length over the limit is answered at once (curl, which waits for 100-continue, sends nothing more);"
    "a body without one (chunked) is counted as it arrives."
    head = b"POST /models/logistic/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    status, answer = _raw(server[0], head + b"Content-Length: %d\r\nExpect: 100-continue\r\n\r\n" % (2**20 + 1))
    assert status == 413 and "at most 1,048,576 bytes" in answer["error"]
    chunk = b"x" * 65536
    status, answer = _raw(server[0], head + b"Transfer-Encoding: chunked\r\n\r\n", *[b"%x\r\n%s\r\n" % (len(chunk), chunk)] * 20, b"0\r\n\r\n")
    assert status == 413 and "send fewer rows per request" in answer["error"]
    assert call(server[0], "/models/logistic/predict", {"inputs": [[0.5] * 30]})[0] == 200


def test_clients_that_go_away_mid_request_leave_the_server_serving(server):
    host, port = server[0].removeprefix("http://").split(":")
    for cut in (b"POST /models/cnn/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 5000\r\n\r\n{\"inputs\": [[",
                b"POST /models/cnn/predict HTTP/1.1\r\nHost: x\r\nContent-Type: appl"):
        with socket.create_connection((host, int(port))) as s:
            s.sendall(cut)
    with socket.create_connection((host, int(port))) as s:  # a full request, closed before its answer is read
        body = json.dumps({"inputs": np.zeros((1, 1, 8, 8)).tolist()}).encode()
        s.sendall(b"POST /models/cnn/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
    time.sleep(0.3)
    assert call(server[0], "/models/cnn/predict", {"inputs": np.zeros((2, 1, 8, 8)).tolist()})[0] == 200


def _rss(pid: int) -> int:
    return int(next(l for l in Path(f"/proc/{pid}/status").read_text().splitlines() if l.startswith("VmRSS")).split()[1])


async def _hammer(url: str, requests: int, clients: int, body: bytes) -> list:
    import httpx

    statuses = []
    async with httpx.AsyncClient(limits=httpx.Limits(max_connections=clients), timeout=30) as client:
        queue = asyncio.Queue()
        for _ in range(requests):
            queue.put_nowait(None)

        async def worker():
            while not queue.empty():
                queue.get_nowait()
                r = await client.post(url, content=body, headers={"content-type": "application/json"})
                statuses.append(r.status_code)

        await asyncio.gather(*(worker() for _ in range(clients)))
    return statuses


def test_ten_thousand_requests_from_64_clients(models):
    "A server as it starts by default (batching, access log), its memory measured after a warm-up and after 10,000 requests."
    process, url, _ = _start([models["cnn"][0]])
    try:
        body = json.dumps({"inputs": np.random.default_rng(0).random((1, 1, 8, 8)).tolist()}).encode()
        asyncio.run(_hammer(url + "/predict", 2000, 64, body))  # warm: allocators and caches at their size
        before = _rss(process.pid)
        statuses = asyncio.run(_hammer(url + "/predict", 10_000, 64, body))
        after = _rss(process.pid)
        assert len(statuses) == 10_000 and set(statuses) == {200}
        assert after - before < 10_000, f"memory grew from {before} to {after} kB"  # flat: no request leaves anything behind
        metrics = urllib.request.urlopen(url + "/metrics").read().decode()
        rows = next(l for l in metrics.splitlines() if l.startswith('workbench_batch_rows_sum{model="cnn"}'))
        calls = next(l for l in metrics.splitlines() if l.startswith('workbench_batch_rows_count{model="cnn"}'))
        assert float(rows.split()[-1]) / float(calls.split()[-1]) > 1  # concurrent requests were batched
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0


def test_health_metrics_access_log_and_traffic_log(server, models):
    url, process, traffic, log = server
    assert call(url, "/v2/health/live")[2] == {"live": True} and call(url, "/v2/health/ready")[2] == {"ready": True}
    assert call(url, "/v2/models/cnn/ready")[2] == {"name": "cnn", "ready": True}
    assert "binary_tensor_data" in call(url, "/v2")[2]["extensions"]
    assert set(call(url, "/")[2]["models"]) == set(models)
    rows = models["logistic"][1][:3]
    call(url, "/models/logistic/predict", {"inputs": rows.tolist()}, headers={"X-Request-ID": "traced-1"})
    call(url, "/models/nothing/predict", {"inputs": rows.tolist()})
    metrics = urllib.request.urlopen(url + "/metrics").read().decode()
    assert 'workbench_requests_total{code="200",endpoint="predict",model="logistic"}' in metrics
    assert 'workbench_requests_total{code="404",endpoint="predict",model=""}' in metrics  # unknown names are no label
    assert "workbench_request_seconds_bucket" in metrics and "workbench_queue_requests" in metrics
    time.sleep(0.4)  # the access log is written every 0.2 s
    lines = [json.loads(l) for l in log.read_text().splitlines() if l.startswith("{")]
    traced = [l for l in lines if l["request_id"] == "traced-1"]
    assert traced and traced[0]["status"] == 200 and traced[0]["rows"] == 3 and traced[0]["model"] == "logistic"


def test_the_traffic_log_holds_what_was_asked_and_answered(models, tmp_path):
    path, X_new = models["logistic"]
    process, url, log = _start([path], "--log-requests", tmp_path, "--no-access-log")
    call(url, "/predict", {"inputs": X_new[:5].tolist()}, headers={"X-Request-ID": "a"})
    call(url, "/predict", {"inputs": X_new[5:7].tolist()})
    process.send_signal(signal.SIGTERM)
    assert process.wait(30) == 0
    frame = read_traffic(tmp_path)
    assert len(frame) == 7 and frame["request"].tolist()[:5] == ["a"] * 5
    np.testing.assert_allclose(frame[[f"x{j}" for j in range(30)]].to_numpy(), X_new[:7])
    assert frame["label"].tolist() == load(path).predict(X_new[:7]).tolist()
    assert {"probabilities_0", "probabilities_1"} <= set(frame.columns) and '"path"' not in log.read_text()


def test_sigterm_finishes_the_request_in_flight_and_exits_0(models, tmp_path):
    path, X_new = models["cnn"]
    process, url, _ = _start([path])
    host, port = url.removeprefix("http://").split(":")
    body = json.dumps({"inputs": X_new[:2].tolist()}).encode()
    with socket.create_connection((host, int(port))) as s:
        s.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body))
        s.sendall(body[:100])
        time.sleep(0.3)
        process.send_signal(signal.SIGTERM)  # the request is half sent
        time.sleep(0.5)
        s.sendall(body[100:])
        answer = b""
        while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
            chunk = s.recv(65536)
            if not chunk:
                break
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 200"), answer
    assert json.loads(answer.split(b"\r\n\r\n", 1)[1])["predictions"] == [int(i) for i in load(path).predict(X_new[:2]).argmax(1)]
    assert process.wait(30) == 0
    with pytest.raises(OSError):
        urllib.request.urlopen(url + "/v2/health/live", timeout=2)  # it no longer listens


def test_several_workers_share_the_port_and_add_up_their_metrics(models):
    path, X_new = models["cnn"]
    process, url, _ = _start([path], "--workers", 2, "--no-access-log")
    try:
        statuses = asyncio.run(_hammer(url + "/predict", 400, 16, json.dumps({"inputs": X_new[:1].tolist()}).encode()))
        assert set(statuses) == {200}
        metrics = urllib.request.urlopen(url + "/metrics").read().decode()
        total = sum(float(l.split()[-1]) for l in metrics.splitlines()
                    if l.startswith("workbench_requests_total{") and 'code="200"' in l and 'endpoint="predict"' in l)
        assert total == 400, metrics
        children = subprocess.run(["ps", "-o", "pid=", "--ppid", str(process.pid)], capture_output=True, text=True).stdout.split()
        assert len(children) >= 2, children  # the two workers (and multiprocessing's resource tracker)
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0


def test_a_lone_client_is_never_batched_and_batching_can_be_off(models):
    path, X_new = models["cnn"]
    for flags, concurrent in [((), False), (("--max-batch", 1), True)]:
        process, url, _ = _start([path], *flags, "--no-access-log")
        try:
            body = json.dumps({"inputs": X_new[:1].tolist()}).encode()
            if concurrent:
                asyncio.run(_hammer(url + "/predict", 300, 32, body))
            else:
                for _ in range(50):
                    assert call(url, "/predict", body)[0] == 200
            metrics = urllib.request.urlopen(url + "/metrics").read().decode()
            single = next(l for l in metrics.splitlines() if l.startswith('workbench_batch_rows_bucket{le="1.0",model="cnn"}'))
            count = next(l for l in metrics.splitlines() if l.startswith('workbench_batch_rows_count{model="cnn"}'))
            assert single.split()[-1] == count.split()[-1]  # every model call had one row
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(30)


def test_a_bundle_that_cannot_be_served_stops_the_command_with_the_reason(models, tmp_path):
    import shutil

    shutil.copytree(models["cnn"][0], tmp_path / "cnn")
    (tmp_path / "cnn" / "model.onnx").write_bytes(b"changed")
    out = workbench("serve", tmp_path / "cnn", "--port", _free_port())
    assert out.returncode == 2 and "changed after export" in out.stderr and "Traceback" not in out.stderr
    for args, message in [((tmp_path / "none",), "there is no bundle at"), ((models["cnn"][0], "--max-batch", "0"), "max_batch must be a number >= 1"),
                          ((models["cnn"][0], models["cnn"][0]), "two bundles are named 'cnn'"),
                          ((models["cnn"][0], "--workers", "0"), "workers must be a whole number >= 1")]:
        out = workbench("serve", *args, "--port", _free_port())
        assert out.returncode == 2 and message in out.stderr, out.stderr


def test_readiness_waits_for_every_model_to_load(models):
    "The ASGI application itself, driven as uvicorn drives it, with a model whose load is held back."
    import threading

    from workbench.serve import App, settings

    app = App(settings([models["cnn"][0]], access_log=False))
    release = threading.Event()
    real = app.models["cnn"].load
    app.models["cnn"].load = lambda: release.wait(10) and real()

    async def ask(path, method="GET", body=b""):
        sent, messages = [], [{"type": "http.request", "body": body, "more_body": False}]
        scope = {"type": "http", "method": method, "path": path, "headers": [(b"content-type", b"application/json")], "client": None}
        await app(scope, lambda: asyncio.sleep(0, messages.pop(0)), lambda m: asyncio.sleep(0, sent.append(m)))
        return sent[0]["status"], json.loads(sent[1]["body"])

    async def scenario():
        startup = [{"type": "lifespan.startup"}]
        events = asyncio.Queue()
        lifespan = asyncio.ensure_future(app({"type": "lifespan"}, lambda: events.get(), lambda m: asyncio.sleep(0)))
        events.put_nowait(startup[0])
        await asyncio.sleep(0.05)
        not_ready, live = await ask("/v2/health/ready"), await ask("/v2/health/live")
        waiting = asyncio.ensure_future(ask("/predict", "POST", json.dumps({"inputs": np.zeros((1, 1, 8, 8)).tolist()}).encode()))
        await asyncio.sleep(0.1)
        assert not waiting.done()
        release.set()
        loading = not_ready, await waiting, live
        for _ in range(100):
            if app.models["cnn"].ready:
                break
            await asyncio.sleep(0.05)
        ready = await ask("/v2/health/ready")
        events.put_nowait({"type": "lifespan.shutdown"})
        await lifespan
        return loading, ready

    (not_ready, waited, live), ready = asyncio.run(scenario())
    assert not_ready == (503, {"ready": False, "loading": ["cnn"]}) and live == (200, {"live": True})
    assert waited[0] == 200 and ready == (200, {"ready": True})  # a request sent while it loaded was answered once it had


def test_serve_from_python_returns_a_handle(models):
    from workbench.serve import serve

    with serve(models["cnn"][0]) as server:
        status, _, answer = call(server.url, "/predict", {"inputs": models["cnn"][1][:2].tolist()})
        assert status == 200 and len(answer["predictions"]) == 2 and "running" in repr(server)
    assert server.process.returncode == 0 and "stopped (0)" in repr(server)


def test_the_readme_curl_examples_work_as_printed(tmp_path):
    "The README's curl lines, against bundles of the demo's names and shapes (a CNN on 8x8 digits, a baseline on 64 pixels)."
    import re
    import shutil

    from sklearn.linear_model import LogisticRegression

    images, labels = _digits()
    export(_cnn(), torch.from_numpy(images[:8]), tmp_path / "cnn-bundle", name="digits-cnn", classes=list(range(10)), formats=["onnx"])
    pixels = images.reshape(len(images), -1).astype(np.float64)
    export(LogisticRegression(max_iter=500).fit(pixels, labels), pixels[:16], tmp_path / "baseline-bundle", name="digits-baseline")
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    command = re.search(r"^workbench serve (runs/demo/\S+) (runs/demo/\S+)", readme, re.M)
    assert command, "the README's serve command"
    process, url, _ = _start([tmp_path / Path(command.group(1)).name, tmp_path / Path(command.group(2)).name], "--no-access-log")
    try:
        block = readme.split("From another terminal:", 1)[1].split("```sh\n", 1)[1].split("```", 1)[0]
        lines = block.replace("\\\n", " ").replace("localhost:8080", url.removeprefix("http://")).splitlines()
        assert len(lines) == 5 and shutil.which("curl")
        for line in lines:
            out = subprocess.run(["bash", "-c", line], capture_output=True, text=True, timeout=30)
            assert out.returncode == 0 and out.stdout, (line, out.stderr)
            if "/metrics" not in line:
                answer = json.loads(out.stdout)
                assert "error" not in answer, answer
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(30)

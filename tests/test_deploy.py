"""`workbench deploy` for each target, checked as far as this machine can without Docker or a cluster.

The image's environment is built as its Dockerfile builds it: a fresh virtual environment with nothing but the
written requirements.txt, workbench's copied modules on PYTHONPATH, and the image's own command (its /app paths
pointing at the written folder). The serverless handler runs in an environment of its own requirements, called with
the events AWS sends. The manifests are parsed and checked for what Kubernetes and KServe need to run them.
"""
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from torch import nn

from conftest import workbench
from workbench.export import export, load

pytestmark = pytest.mark.xdist_group("deploy")


@pytest.fixture(scope="module")
def bundles(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("bundles")
    torch.manual_seed(0)
    cnn = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(32, 10)).eval()
    export(cnn, torch.rand(8, 1, 8, 8), root / "digits", classes=list(range(10)), formats=["onnx"])
    X, y = load_iris(return_X_y=True, as_frame=True)
    export(LogisticRegression(max_iter=500).fit(X, y), X.to_numpy(np.float32)[:8], root / "iris")
    return {"digits": root / "digits", "iris": root / "iris"}


def _venv(folder: Path, requirements: Path) -> Path:
    "A fresh virtual environment holding only `requirements`; its python."
    subprocess.run([sys.executable, "-m", "venv", folder], check=True)
    python = folder / "bin" / "python"
    out = subprocess.run([python, "-m", "pip", "install", "-q", "--disable-pip-version-check", "-r", requirements], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-3000:]
    return python


def _importable(python: Path, module: str) -> bool:
    return subprocess.run([python, "-c", f"import {module}"], capture_output=True, cwd=python.parent).returncode == 0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _post(url, doc) -> dict:
    request = urllib.request.Request(url, data=json.dumps(doc).encode(), headers={"content-type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as r:
        return json.loads(r.read())


def test_the_docker_image_runs_on_its_requirements_alone(bundles, tmp_path):
    out = tmp_path / "image"
    result = workbench("deploy", f"digits={bundles['digits']}", f"iris={bundles['iris']}", "--target", "docker", "--out", out, "--max-batch", "8")
    assert result.returncode == 0, result.stderr
    lines = (out / "Dockerfile").read_text().splitlines()
    assert lines[2].startswith("FROM python:3.") and lines[2].endswith("-slim") and "USER 10001" in lines and "EXPOSE 8080" in lines
    command = json.loads(next(l for l in lines if l.startswith("CMD "))[4:])
    health = json.loads(next(l for l in lines if l.startswith("HEALTHCHECK")).split(" CMD ", 1)[1])

    python = _venv(tmp_path / "venv", out / "requirements.txt")
    for heavy in ("torch", "pandas", "sklearn", "jupyterlab", "workbench"):  # the image carries the serving part alone
        assert not _importable(python, heavy), heavy
    port = _free_port()
    argv = [str(python) if a == "python" else a.replace("/app/", f"{out}/") for a in command]
    argv[argv.index("--port") + 1], argv[argv.index("--host") + 1] = str(port), "127.0.0.1"
    server = subprocess.Popen(argv, cwd=out, env={"PATH": os.environ["PATH"], "PYTHONPATH": str(out)},
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        url, deadline = f"http://127.0.0.1:{port}", time.monotonic() + 60
        check = [str(python) if a == "python" else a.replace("8080", str(port)) for a in health]
        while subprocess.run(check, capture_output=True).returncode != 0:  # the image's own HEALTHCHECK
            assert server.poll() is None and time.monotonic() < deadline, server.stdout.read()
            time.sleep(0.2)
        images = np.random.default_rng(0).random((3, 1, 8, 8), dtype=np.float32)
        answer = _post(f"{url}/models/digits/predict", {"inputs": images.tolist()})
        assert answer["predictions"] == load(bundles["digits"]).predict(images).argmax(1).tolist()
        rows = load_iris().data[:4].astype(np.float32)
        v2 = _post(f"{url}/v2/models/iris/infer", {"inputs": [{"name": "input", "shape": [4, 4], "datatype": "FP32", "data": rows.ravel().tolist()}]})
        assert v2["outputs"][0]["data"] == load(bundles["iris"]).predict(rows).tolist()
    finally:
        server.send_signal(signal.SIGTERM)
        assert server.wait(30) == 0


def test_the_lambda_handler_answers_aws_events(bundles, tmp_path):
    out = tmp_path / "function"
    assert workbench("deploy", bundles["digits"], "--target", "lambda", "--out", out).returncode == 0
    dockerfile = (out / "Dockerfile").read_text()
    assert "FROM public.ecr.aws/lambda/python:3." in dockerfile and 'CMD ["handler.handler"]' in dockerfile
    python = _venv(tmp_path / "venv", out / "requirements.txt")
    assert not _importable(python, "uvicorn") and not _importable(python, "torch")
    images = np.random.default_rng(1).random((2, 1, 8, 8), dtype=np.float32)
    body = json.dumps({"inputs": images.tolist()})
    events = [
        {"httpMethod": "POST", "path": "/predict", "headers": {"Content-Type": "application/json"}, "body": body, "isBase64Encoded": False},
        {"version": "2.0", "rawPath": "/predict", "requestContext": {"http": {"method": "POST", "path": "/predict"}},
         "headers": {"content-type": "application/json"}, "body": __import__("base64").b64encode(body.encode()).decode(), "isBase64Encoded": True},
        {"inputs": images.tolist()},
        {"inputs": [{"name": "input", "shape": [2, 1, 8, 8], "datatype": "FP32", "data": images.ravel().tolist()}]},
        {"httpMethod": "POST", "path": "/predict", "headers": {}, "body": '{"inputs": [[1, 2]]}'},
        {"httpMethod": "GET", "path": "/v2/health/ready", "headers": {}, "body": None},
    ]
    script = ("import json, sys, time\nstart = time.perf_counter()\nimport handler\ncold = time.perf_counter() - start\n"
              f"events = json.loads({json.dumps(json.dumps(events))})\n"
              "print(json.dumps({'cold': cold, 'answers': [handler.handler(e, None) for e in events]}))\n")
    run = subprocess.run([python, "-c", script], cwd=out, env={"PATH": os.environ["PATH"], "PYTHONPATH": str(out)}, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout)
    print(f"cold start (import + load): {result['cold']:.2f} s")
    answers = result["answers"]
    expected = load(bundles["digits"]).predict(images).argmax(1).tolist()
    for answer in answers[:3]:
        assert answer["statusCode"] == 200 and json.loads(answer["body"])["predictions"] == expected, answer
    v2 = json.loads(answers[3]["body"])
    assert np.allclose(np.array(v2["outputs"][0]["data"]).reshape(2, 10), load(bundles["digits"]).predict(images), atol=1e-5)
    assert answers[4]["statusCode"] == 400 and "takes [batch, 1, 8, 8]" in json.loads(answers[4]["body"])["error"]
    assert answers[5]["statusCode"] == 200


def test_kubernetes_and_kserve_manifests_hold_what_a_cluster_needs(bundles, tmp_path):
    assert workbench("deploy", f"Digits_CNN={bundles['digits']}", "--target", "kubernetes", "--out", tmp_path / "k8s",
                     "--image", "registry.example.org/digits:1", "--workers", "2").returncode == 0
    deployment, service, autoscaler = yaml.safe_load_all((tmp_path / "k8s" / "kubernetes.yaml").read_text())
    name = deployment["metadata"]["name"]
    assert name == "digits-cnn" and deployment["apiVersion"] == "apps/v1" and service["metadata"]["name"] == name
    pod = deployment["spec"]["template"]
    assert deployment["spec"]["selector"]["matchLabels"] == pod["metadata"]["labels"] == service["spec"]["selector"]
    container = pod["spec"]["containers"][0]
    assert container["image"] == "registry.example.org/digits:1" and container["ports"][0]["containerPort"] == 8080
    assert service["spec"]["ports"][0]["targetPort"] == container["ports"][0]["name"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/v2/health/live" and container["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert container["resources"]["requests"]["cpu"] == "2" and container["resources"]["requests"]["memory"].endswith("Mi")
    assert pod["spec"]["terminationGracePeriodSeconds"] > 30 + 5  # the server's own graceful stop and the pre-stop pause
    assert autoscaler["kind"] == "HorizontalPodAutoscaler" and autoscaler["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": name}
    command = json.loads((tmp_path / "k8s" / "Dockerfile").read_text().split("\nCMD ")[1])
    assert command[-2:] == ["--workers", "2"] and "Digits_CNN=/app/models/Digits_CNN" in command

    assert workbench("deploy", bundles["iris"], "--target", "kserve", "--out", tmp_path / "kserve").returncode == 0
    (service,) = yaml.safe_load_all((tmp_path / "kserve" / "inferenceservice.yaml").read_text())
    assert service["apiVersion"] == "serving.kserve.io/v1beta1" and service["kind"] == "InferenceService"
    container = service["spec"]["predictor"]["containers"][0]
    assert container["name"] == "kserve-container" and container["image"] == "workbench-iris:latest"
    assert container["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]


@pytest.mark.parametrize("args, message", [
    (["a={digits}", "--target", "lambda", "--out", "{tmp}/two"], "a serverless function serves one bundle; 2 were given"),
    (["--target", "docker", "--out", "{tmp}/full"], "exists and is not an empty folder"),
    (["--target", "docker", "--out", "{tmp}/new", "--max-queue", "0"], "max_queue must be a number >= 1"),
])
def test_bad_deployments_exit_2_and_write_nothing(bundles, tmp_path, args, message):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine")
    args = [a.format(tmp=tmp_path, digits=bundles["digits"]) for a in args]
    out = workbench("deploy", bundles["digits"], *args)
    assert out.returncode == 2 and message in out.stderr, out.stderr
    assert not (tmp_path / "two").exists() and not (tmp_path / "new").exists() and (tmp_path / "full" / "keep.txt").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["full"]  # no temporary folder left


@pytest.mark.parametrize("run_store", ["postgresql"], indirect=True)  # a team's registry: PostgreSQL and S3
def test_an_image_that_follows_the_registry_reads_the_team_from_its_environment_alone(bundles, tmp_path):
    from conftest import PG_PASSWORD
    from workbench.registry import promote, register

    torch.manual_seed(1)
    other = export(nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(32, 10)).eval(),
                   torch.rand(8, 1, 8, 8), tmp_path / "digits-2", name="digits", classes=list(range(10)), formats=["onnx"])
    register(bundles["digits"], name="digits")
    register(other.path)
    promote("digits", 1, "production")
    out = tmp_path / "image"
    result = workbench("deploy", "models:/digits@production", "--target", "kubernetes", "--out", out, "--follow", "--watch-seconds", "0.5")
    assert result.returncode == 0, result.stderr
    assert not (out / "models").exists() and "kubectl create secret generic workbench-team" in (out / "kubernetes.yaml").read_text()
    command = json.loads((out / "Dockerfile").read_text().split("\nCMD ")[1])
    assert "digits=models:/digits@production" in command
    text = (out / "Dockerfile").read_text() + (out / "kubernetes.yaml").read_text()
    assert os.environ["WORKBENCH_STORE"] not in text and PG_PASSWORD not in text and os.environ["WORKBENCH_ARTIFACTS"] not in text  # nothing baked in

    python = _venv(tmp_path / "venv", out / "requirements.txt")
    assert not _importable(python, "torch") and not _importable(python, "pandas")
    port = _free_port()
    argv = [str(python) if a == "python" else a for a in command]
    argv[argv.index("--port") + 1], argv[argv.index("--host") + 1] = str(port), "127.0.0.1"
    secret = {k: os.environ[k] for k in ("WORKBENCH_STORE", "PGPASSWORD", "WORKBENCH_ARTIFACTS", "AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID",
                                         "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")}  # what the Secret holds
    server = subprocess.Popen(argv, cwd=out, env={"PATH": os.environ["PATH"], "PYTHONPATH": str(out), **secret,
                                                  "WORKBENCH_ARTIFACT_CACHE": str(tmp_path / "cache")},
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        url, deadline = f"http://127.0.0.1:{port}", time.monotonic() + 90
        while True:
            try:
                urllib.request.urlopen(f"{url}/v2/health/ready", timeout=1).close()
                break
            except OSError:
                assert server.poll() is None and time.monotonic() < deadline, server.stdout.read()
                time.sleep(0.2)
        images = np.random.default_rng(0).random((16, 1, 8, 8), dtype=np.float32)
        one, two = (load(b).predict(images).argmax(1).tolist() for b in (bundles["digits"], other.path))
        assert one != two and _post(f"{url}/predict", {"inputs": images.tolist()})["predictions"] == one
        promote("digits", 2, "production")
        while _post(f"{url}/predict", {"inputs": images.tolist()})["predictions"] != two:
            assert time.monotonic() < deadline + 30, "the image did not follow the alias"
            time.sleep(0.2)
    finally:
        server.send_signal(signal.SIGTERM)
        assert server.wait(30) == 0

"""A team's artifacts on S3 (a real S3 API server on loopback: moto's server mode, the S3 endpoint available here) beside
a PostgreSQL store: each file uploaded once, fetched once per machine, checked on every resolution, and every failure
to reach the bucket one line that says what to check."""
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request

import boto3
import numpy as np
import pytest
import torch
from torch import nn

from conftest import S3_CREDENTIALS, workbench
from workbench.export import ExportError, export, load
from workbench.registry import models, promote, register

pytestmark = pytest.mark.parametrize("run_store", ["postgresql"], indirect=True)  # as a team runs it: PostgreSQL and S3


def _bundle(path, seed=0):
    torch.manual_seed(seed)
    return export(nn.Sequential(nn.Linear(4, 2)).eval(), torch.randn(4, 4), path, name="scorer", formats=["onnx"])


def _bucket() -> tuple:
    "(an S3 client, the bucket, the prefix) of the tests' artifact root."
    bucket, _, prefix = os.environ["WORKBENCH_ARTIFACTS"][len("s3://"):].partition("/")
    return boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"]), bucket, prefix


def _objects() -> list:
    "The keys under the tests' artifact root, as the bucket lists them."
    client, bucket, prefix = _bucket()
    return sorted(o["Key"][len(prefix) + 1:] for o in client.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", []))


def test_each_file_is_uploaded_once_and_fetched_once_per_machine(tmp_path):
    v1 = register(_bundle(tmp_path / "a").path)
    kept = _objects()
    blobs = [k for k in kept if k.startswith("blobs/")]
    assert v1.path == f"{os.environ['WORKBENCH_ARTIFACTS']}/{[k for k in kept if k.startswith('bundles/')][0]}"
    assert len(blobs) == len({k.rsplit('/', 1)[1] for k in blobs}) >= 3  # metadata, model, sample: each once, named by digest
    register(tmp_path / "a")  # the same files again: nothing new in the bucket
    assert _objects() == kept
    shutil.rmtree(os.environ["WORKBENCH_ARTIFACT_CACHE"])  # another machine: nothing fetched yet
    x = np.random.default_rng(0).normal(size=(3, 4)).astype(np.float32)
    answers = load("models:/scorer/1").predict(x)
    client, bucket, prefix = _bucket()
    manifest = json.loads(client.get_object(Bucket=bucket, Key=v1.path[len(f"s3://{bucket}/"):])["Body"].read())
    assert set(manifest) >= {"metadata.json", "model.onnx"}  # the version's object lists its files
    for key in blobs:
        client.delete_object(Bucket=bucket, Key=f"{prefix}/{key}")
    assert (load("models:/scorer/1").predict(x) == answers).all()  # from this machine's cache, checked: no download
    shutil.rmtree(os.environ["WORKBENCH_ARTIFACT_CACHE"])
    with pytest.raises(ExportError, match=r"models:/scorer/1 .*: its file \S+ is missing from the artifact store \(s3://"):
        load("models:/scorer/1")


def test_serving_from_the_registry_follows_an_alias_to_a_version_kept_on_s3(tmp_path):
    from workbench.serve import serve

    x = [[0.5, -1.0, 2.0, 0.0]]
    for seed in (0, 1):
        register(_bundle(tmp_path / f"v{seed}", seed).path)
    promote("scorer", 1, "production")
    expected = {v: load(f"models:/scorer/{v}").predict(np.array(x, np.float32)) for v in (1, 2)}
    shutil.rmtree(os.environ["WORKBENCH_ARTIFACT_CACHE"])  # the server's machine fetches what it serves
    with serve(["models:/scorer@production"], watch_seconds=0.2) as server:
        def ask() -> tuple:
            request = urllib.request.Request(f"{server.url}/predict", json.dumps({"inputs": x}).encode(), {"content-type": "application/json"})
            with urllib.request.urlopen(request) as r:
                return r.headers["x-model-version"], np.ravel(json.loads(r.read())["predictions"])
        version, answer = ask()
        assert version == "1" and np.allclose(answer, np.ravel(expected[1]), atol=1e-6), (answer, expected)
        promote("scorer", 2, "production")
        deadline = time.monotonic() + 30
        while ask()[0] != "2":
            assert time.monotonic() < deadline, server.log.read_text()[-2000:]
        assert np.allclose(ask()[1], np.ravel(expected[2]), atol=1e-6)


def _in_a_new_process(*code: str) -> subprocess.CompletedProcess:
    "Python lines run in a process of their own, as a user's would: its environment is the one the test set."
    return subprocess.run([sys.executable, "-c", "\n".join(code)], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("where, message", [
    ("a bucket nobody made", "The specified bucket does not exist"),
    ("an endpoint nobody serves", "Could not connect to the endpoint URL"),
])
def test_a_bucket_out_of_reach_is_one_line_and_registers_nothing(tmp_path, monkeypatch, where, message):
    bundle = _bundle(tmp_path / "a").path
    if where == "a bucket nobody made":
        monkeypatch.setenv("WORKBENCH_ARTIFACTS", "s3://nobody-made-this-bucket/artifacts")
    else:
        monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    done = _in_a_new_process("from workbench.core import WorkbenchError", "from workbench.registry import register",
                             f"try:\n    register({str(bundle)!r})\nexcept WorkbenchError as e:\n    print(e)")
    said = done.stdout.strip()
    assert done.returncode == 0 and said.startswith(f"cannot reach the artifact store {os.environ['WORKBENCH_ARTIFACTS']}: "), done.stderr
    assert message in said and "check $WORKBENCH_ARTIFACTS" in said and "\n" not in said
    assert S3_CREDENTIALS["AWS_SECRET_ACCESS_KEY"] not in done.stdout + done.stderr
    assert models().empty


def test_loading_from_an_endpoint_out_of_reach_is_one_line(tmp_path, monkeypatch):
    register(_bundle(tmp_path / "a").path)
    shutil.rmtree(os.environ["WORKBENCH_ARTIFACT_CACHE"])
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    out = workbench("check", "models:/scorer/1")
    assert out.returncode == 2 and "cannot reach the artifact store s3://" in out.stderr and "Traceback" not in out.stderr, out.stderr
    assert len(out.stderr.strip().splitlines()) == 1 and S3_CREDENTIALS["AWS_SECRET_ACCESS_KEY"] not in out.stdout + out.stderr

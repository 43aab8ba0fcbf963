"""Requests nobody here wrote, sent to a real `workbench serve` over real sockets: every malformed request of a
distinct kind gets its own 4xx with a JSON error (never a 5xx, never a hang), the server keeps answering, the traffic
log holds only the requests that were answered 2xx, and a bounded fuzz run of both endpoints finds no 5xx."""
import gzip
import http.client
import io
import json
import signal
import socket
import zlib

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.compose import make_column_transformer
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder

from test_serve import _start
from workbench.export import export
from workbench.traffic import read_traffic

pytestmark = pytest.mark.xdist_group("hostile-server")
MAX_BODY = 65536


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    "A numeric model (iris) and a frame model with a text column, a small body limit, the traffic log on."
    root = tmp_path_factory.mktemp("hostile")
    X, y = load_iris(return_X_y=True)
    export(LogisticRegression(max_iter=500).fit(X, y), X[:8].astype(np.float32), root / "iris")
    pets = pd.DataFrame({"colour": ["red", "blue", "green", "red"] * 10, "size": np.arange(40, dtype=float)})
    pipeline = make_pipeline(make_column_transformer((OneHotEncoder(handle_unknown="ignore"), ["colour"]), remainder="passthrough"),
                             LogisticRegression()).fit(pets, pets["size"] > 20)
    export(pipeline, pets.head(8), root / "pets")
    traffic = root / "traffic"
    process, url, log = _start([f"iris={root / 'iris'}", f"pets={root / 'pets'}"], "--max-body", MAX_BODY, "--log-requests", traffic,
                               "--log-seconds", 0.2)
    yield url, process, root, log
    process.send_signal(signal.SIGTERM)
    process.wait(30)


def send(url, method, path, body=b"", headers=None):
    "(status, parsed JSON or raw bytes) of one request sent as given: no client-side checks or fixes."
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        conn.putrequest(method, path, skip_accept_encoding=True)
        for k, v in (headers or {}).items():
            conn.putheader(k, v)
        if "content-length" not in {k.lower() for k in (headers or {})}:
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        r = conn.getresponse()
        raw = r.read()
        kind = r.getheader("content-type", "")
        return r.status, json.loads(raw) if kind.startswith("application/json") else raw
    finally:
        conn.close()


def npy(array, **kw) -> bytes:
    f = io.BytesIO()
    np.save(f, array, **kw)
    return f.getvalue()


def forged_npy(shape, descr="<f4") -> bytes:
    from numpy.lib import format as fmt

    f = io.BytesIO()
    fmt.write_array_header_1_0(f, {"descr": descr, "fortran_order": False, "shape": shape})
    return f.getvalue() + b"\0" * 64


def js(doc) -> bytes:
    return json.dumps(doc).encode()


ROW = [5.1, 3.5, 1.4, 0.2]
V2 = "/v2/models/iris/infer"
PLAIN = "/models/iris/predict"
NPY = {"content-type": "application/x-npy"}
JSON = {"content-type": "application/json"}


def v2(inputs, **extra) -> bytes:
    return js({"inputs": inputs, **extra})


def tensor(data=ROW, shape=(1, 4), datatype="FP32", name="input", **extra):
    return {"name": name, "shape": list(shape), "datatype": datatype, "data": data, **extra}


def binary(header: dict, data: bytes) -> tuple:
    head = js(header)
    return head + data, {"content-type": "application/octet-stream", "inference-header-content-length": str(len(head))}


def bytes_tensor(strings: list) -> bytes:
    return b"".join(len(s).to_bytes(4, "little") + s for s in strings)


CASES = {  # kind: (method, path, body, headers, status)
    "empty body": ("POST", PLAIN, b"", JSON, 400),
    "not JSON": ("POST", PLAIN, b"{", JSON, 400),
    "JSON list at the top": ("POST", PLAIN, js([1, 2]), JSON, 400),
    "inputs a string": ("POST", PLAIN, js({"inputs": "rows"}), JSON, 400),
    "no inputs key": ("POST", PLAIN, js({"rows": [ROW]}), JSON, 400),
    "empty batch": ("POST", PLAIN, js({"inputs": []}), JSON, 400),
    "a row too short": ("POST", PLAIN, js({"inputs": [ROW[:3]]}), JSON, 400),
    "a row too long": ("POST", PLAIN, js({"inputs": [ROW + [1.0]]}), JSON, 400),
    "text in a number": ("POST", PLAIN, js({"inputs": [ROW[:3] + ["a"]]}), JSON, 400),
    "ragged rows": ("POST", PLAIN, js({"inputs": [ROW, ROW[:1]]}), JSON, 400),
    "a 3-d batch": ("POST", PLAIN, js({"inputs": [[ROW]]}), JSON, 400),
    "a number too big for JSON": ("POST", PLAIN, b'{"inputs": [[1e999, 1, 1, 1]]}', JSON, 400),
    "JSON nested 30,000 deep": ("POST", PLAIN, b'{"inputs": ' + b"[" * 30_000 + b"]" * 30_000 + b"}", JSON, 400),
    "named inputs to an unnamed model": ("POST", PLAIN, js({"inputs": {"a": [1]}}), JSON, 400),
    "invalid UTF-8 in JSON": ("POST", PLAIN, b'{"inputs": "\xff\xfe"}', JSON, 400),
    ".npy of objects": ("POST", PLAIN, npy(np.array([{"x": 1}], dtype=object), allow_pickle=True), NPY, 400),
    ".npy claiming 10^12 floats": ("POST", PLAIN, forged_npy((10**6, 10**6)), NPY, 413),
    ".npy claiming more than it holds": ("POST", PLAIN, forged_npy((100, 4)), NPY, 400),
    ".npy cut short": ("POST", PLAIN, npy(np.ones((2, 4), np.float32))[:90], NPY, 400),
    ".npy not .npy": ("POST", PLAIN, b"\x93NUMPY garbage", NPY, 400),
    ".npy of the wrong width": ("POST", PLAIN, npy(np.ones((2, 3), np.float32)), NPY, 400),
    ".npy of text": ("POST", PLAIN, npy(np.array([["a"] * 4])), NPY, 400),
    ".npy of a version numpy never writes": ("POST", PLAIN, b"\x93NUMPY\x09\x00" + b"\0" * 64, NPY, 400),
    "JSON sent as .npy": ("POST", PLAIN, js({"inputs": [ROW]}), NPY, 400),
    "gzip bomb": ("POST", PLAIN, gzip.compress(b"[" * (4 * MAX_BODY)), {**JSON, "content-encoding": "gzip"}, 413),
    "an encoding not read": ("POST", PLAIN, js({"inputs": [ROW]}), {**JSON, "content-encoding": "br"}, 415),
    "gzip that is not": ("POST", PLAIN, b"\x1f\x8bnot gzip", {**JSON, "content-encoding": "gzip"}, 400),
    "deflate that is not": ("POST", PLAIN, b"not deflate", {**JSON, "content-encoding": "deflate"}, 400),
    "a body over --max-body": ("POST", PLAIN, b" " * (MAX_BODY + 1), JSON, 413),
    "a declared length over --max-body": ("POST", PLAIN, b"", {**JSON, "content-length": str(MAX_BODY * 100)}, 413),
    "10,000 headers": ("POST", PLAIN, js({"inputs": [ROW]}), {**JSON, **{f"x-h{i}": "1" for i in range(10_000)}}, 431),
    "one header of a megabyte": ("POST", PLAIN, js({"inputs": [ROW]}), {**JSON, "x-big": "a" * 2**20}, 431),
    "an unknown model": ("POST", "/models/nope/predict", js({"inputs": [ROW]}), JSON, 404),
    "GET on predict": ("GET", PLAIN, b"", {}, 405),
    "PUT on infer": ("PUT", V2, v2([tensor()]), JSON, 405),
    "an unknown route": ("GET", "/etc/passwd", b"", {}, 404),
    "a path that climbs": ("POST", "/models/../../iris/predict", js({"inputs": [ROW]}), JSON, 404),
    "V2: empty object": ("POST", V2, js({}), JSON, 400),
    "V2: inputs an object": ("POST", V2, js({"inputs": {"input": ROW}}), JSON, 400),
    "V2: a tensor without a name": ("POST", V2, v2([{k: v for k, v in tensor().items() if k != "name"}]), JSON, 400),
    "V2: an unknown input": ("POST", V2, v2([tensor(name="other")]), JSON, 400),
    "V2: two tensors for one input": ("POST", V2, v2([tensor(), tensor()]), JSON, 400),
    "V2: an unknown datatype": ("POST", V2, v2([tensor(datatype="FP128")]), JSON, 400),
    "V2: BYTES to a numeric model": ("POST", V2, v2([tensor(data=["a"] * 4, datatype="BYTES")]), JSON, 400),
    "V2: shape and data disagree": ("POST", V2, v2([tensor(shape=(2, 4))]), JSON, 400),
    "V2: a negative shape": ("POST", V2, v2([tensor(shape=(-1, 4))]), JSON, 400),
    "V2: a shape of 10^12 rows": ("POST", V2, v2([tensor(shape=(10**12, 4))]), JSON, 400),
    "V2: a shape that is text": ("POST", V2, v2([tensor(shape="1,4")]), JSON, 400),
    "V2: a shape of floats": ("POST", V2, v2([tensor(shape=(1.5, 4))]), JSON, 400),
    "V2: data not a list": ("POST", V2, v2([tensor(data="1,2,3,4")]), JSON, 400),
    "V2: text in FP32 data": ("POST", V2, v2([tensor(data=["a", "b", "c", "d"])]), JSON, 400),
    "V2: no data at all": ("POST", V2, v2([{k: v for k, v in tensor().items() if k != "data"}]), JSON, 400),
    "V2: outputs not a list": ("POST", V2, v2([tensor()], outputs="label"), JSON, 400),
    "V2: an unknown output": ("POST", V2, v2([tensor()], outputs=[{"name": "secret"}]), JSON, 400),
    "V2: binary size past the body": ("POST", V2, *binary({"inputs": [{**tensor(data=None), "parameters": {"binary_data_size": 160}}]},
                                                          np.ones(4, np.float32).tobytes()), 400),
    "V2: binary size negative": ("POST", V2, *binary({"inputs": [{**tensor(data=None), "parameters": {"binary_data_size": -16}}]},
                                                     np.ones(4, np.float32).tobytes()), 400),
    "V2: binary size a string": ("POST", V2, *binary({"inputs": [{**tensor(data=None), "parameters": {"binary_data_size": "16"}}]},
                                                     np.ones(4, np.float32).tobytes()), 400),
    "V2: binary of the wrong shape": ("POST", V2, *binary({"inputs": [{**tensor(data=None, shape=(2, 4)), "parameters": {"binary_data_size": 16}}]},
                                                          np.ones(4, np.float32).tobytes()), 400),
    "V2: header length past the body": ("POST", V2, v2([tensor()]), {**JSON, "inference-header-content-length": "100000"}, 400),
    "V2: header length not a number": ("POST", V2, v2([tensor()]), {**JSON, "inference-header-content-length": "ten"}, 400),
    "V2: header length zero": ("POST", V2, v2([tensor()]), {**JSON, "inference-header-content-length": "0"}, 400),
    "frame: a missing column": ("POST", "/models/pets/predict", js({"inputs": [{"colour": "red"}]}), JSON, 400),
    "frame: an unknown column": ("POST", "/models/pets/predict", js({"inputs": [{"colour": "red", "size": 1, "owner": "x"}]}), JSON, 400),
    "frame: text in a number column": ("POST", "/models/pets/predict", js({"inputs": [{"colour": "red", "size": "big"}]}), JSON, 400),
    "frame: records that are lists": ("POST", "/models/pets/predict", js({"inputs": [["red", 1.0], 7]}), JSON, 400),
    "frame: columns of unequal length": ("POST", "/models/pets/predict", js({"inputs": {"colour": ["red", "blue"], "size": [1.0]}}), JSON, 400),
    "frame: no records": ("POST", "/models/pets/predict", js({"inputs": []}), JSON, 400),
    "frame: .npy to named inputs": ("POST", "/models/pets/predict", npy(np.ones((1, 2))), NPY, 400),
    "frame V2: BYTES not UTF-8": ("POST", "/v2/models/pets/infer", *binary(
        {"inputs": [{"name": "colour", "shape": [1, 1], "datatype": "BYTES", "parameters": {"binary_data_size": 6}},
                    tensor(data=[1.0], shape=(1, 1), datatype="FP64", name="size")]}, bytes_tensor([b"\xff\xfe"])), 400),
    "frame V2: a string longer than its data": ("POST", "/v2/models/pets/infer", *binary(
        {"inputs": [{"name": "colour", "shape": [1, 1], "datatype": "BYTES", "parameters": {"binary_data_size": 7}}]},
        (1000).to_bytes(4, "little") + b"red"), 400),
    "frame V2: 10^12 strings in 8 bytes": ("POST", "/v2/models/pets/infer", *binary(
        {"inputs": [{"name": "colour", "shape": [10**12, 1], "datatype": "BYTES", "parameters": {"binary_data_size": 8}},
                    tensor(data=[1.0], shape=(1, 1), datatype="FP64", name="size")]}, bytes_tensor([b"abcd"])), 400),
    "frame V2: a column left out": ("POST", "/v2/models/pets/infer", v2([{"name": "colour", "shape": [1, 1], "datatype": "BYTES", "data": ["red"]}]), JSON, 400),
}


def test_so_many_kinds():
    assert len(CASES) >= 60


@pytest.mark.parametrize("kind", CASES)
def test_a_malformed_request_gets_its_4xx_and_says_why(server, kind):
    method, path, body, headers, status = CASES[kind]
    got, answer = send(server[0], method, path, body, headers)
    assert got == status, (got, answer)
    if got not in (404, 405):
        assert isinstance(answer, dict) and answer["error"] and len(answer["error"]) < 1000, answer
    assert send(server[0], "POST", PLAIN, js({"inputs": [ROW]}), JSON)[0] == 200  # and the server goes on


def test_a_slow_header_flood_on_a_raw_socket_gets_431(server):
    host, port = server[0].removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as s:
        s.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n" + b"".join(b"x-%d: %s\r\n" % (i, b"v" * 64) for i in range(2000)) + b"\r\n")
        assert s.recv(64).split(b" ")[1] == b"431"


json_values = st.recursive(st.none() | st.booleans() | st.floats(allow_nan=False) | st.integers() | st.text(max_size=8),
                           lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner, max_size=5), max_leaves=20)
v2_docs = st.fixed_dictionaries({"inputs": st.lists(st.fixed_dictionaries(
    {"name": st.sampled_from(["input", "colour", "size", "x"]), "shape": st.lists(st.integers(-2, 10**13), max_size=3),
     "datatype": st.sampled_from(["FP32", "FP64", "INT64", "BYTES", "BOOL", "UINT8", "FP16", "nope"]), "data": json_values},
    optional={"parameters": json_values}), max_size=3)},
    optional={"outputs": st.lists(st.dictionaries(st.sampled_from(["name", "parameters"]), json_values), max_size=3) | json_values,
              "parameters": json_values, "id": json_values})


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(doc=v2_docs | json_values, model=st.sampled_from(["iris", "pets"]), v2_endpoint=st.booleans())
def test_fuzzed_json_never_gets_a_5xx(server, doc, model, v2_endpoint):
    path = f"/v2/models/{model}/infer" if v2_endpoint else f"/models/{model}/predict"
    status, answer = send(server[0], "POST", path, js(doc), JSON)
    assert status < 500, (doc, answer)


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
@given(body=st.binary(max_size=300), kind=st.sampled_from(["application/x-npy", "application/octet-stream", "application/json"]),
       encoding=st.sampled_from([None, "gzip", "deflate"]))
def test_fuzzed_bytes_never_get_a_5xx(server, body, kind, encoding):
    if encoding == "gzip" and body[:1] == b"\x00":
        body = gzip.compress(body)
    elif encoding == "deflate" and body[:1] == b"\x00":
        body = zlib.compress(body)
    headers = {"content-type": kind, **({"content-encoding": encoding} if encoding else {})}
    for path in (PLAIN, V2, "/models/pets/predict"):
        assert send(server[0], "POST", path, body, headers)[0] < 500


def test_the_traffic_log_keeps_only_answered_requests(server, tmp_path):
    "Requests answered 400 after their rows were read (an unknown output, asked 250 times; rows of the wrong width) leave no row; answered ones do."
    process, url, _ = _start([server[2] / "iris"], "--log-requests", tmp_path, "--no-access-log")
    for _ in range(250):
        assert send(url, "POST", V2, v2([tensor()], outputs=[{"name": "secret"}]), JSON)[0] == 400
    for _ in range(10):
        assert send(url, "POST", PLAIN, js({"inputs": [ROW[:3]]}), JSON)[0] == 400
    for _ in range(5):
        assert send(url, "POST", PLAIN, js({"inputs": [ROW] * 3}), JSON)[0] == 200
    process.send_signal(signal.SIGTERM)
    assert process.wait(30) == 0
    assert len(read_traffic(tmp_path)) == 15

"""Named inputs over HTTP, against a real server process: a pipeline fitted on penguins with text columns, asked by
Triton's own Python client (BYTES tensors, JSON and binary, gzip and deflate bodies) and by plain JSON records, and
a BERT that takes `input_ids` with an `attention_mask`, asked by many clients at once with sentences of many
lengths. Every mistake a client makes is a 4xx that names the input or column and the fix, and the server keeps
serving; the traffic log keeps text as text, and monitoring reads it back column by column.
"""
import concurrent.futures
import gzip
import json
import urllib.error
import urllib.request
import zlib

import numpy as np
import pytest
import torch

from frames import penguins
from test_named_inputs import PIPELINES, _bert, _padded_batch
from workbench.export import export
from workbench.monitor import monitor
from workbench.serve import serve
from workbench.traffic import read_traffic

pytestmark = [pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning"), pytest.mark.xdist_group("serve-named")]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    "A server of the penguins pipeline, a penguins forest and a BERT with a mask; the fitted models; the traffic folder."
    root = tmp_path_factory.mktemp("named")
    X, species, _ = penguins()
    pipeline = PIPELINES["penguins-onehot-logistic"][2]().fit(X, species)
    forest = PIPELINES["penguins-constant-forest"][2]().fit(X, species)
    export(pipeline, X.head(20), root / "penguins")
    export(forest, X.head(20), root / "forest")
    bert = _bert("sequence")
    export(bert, {k: torch.from_numpy(v) for k, v in _padded_batch([12, 7, 3, 12]).items()}, root / "bert",
           dynamic_axes={1: "sequence"}, classes=[0, 1, 2], formats=["onnx"])
    traffic = root / "traffic"
    server = serve({"penguins": root / "penguins", "forest": root / "forest", "bert": root / "bert"}, max_body=2**20,
                   log_requests=str(traffic), max_wait_ms=20)
    yield {"url": server.url, "X": X, "species": species, "pipeline": pipeline, "forest": forest, "bert": bert,
           "traffic": traffic, "root": root, "server": server}
    server.stop()


def call(url, path, body=None, headers=None):
    "(status, parsed JSON body) of one request; a dict body is sent as JSON."
    data = json.dumps(body).encode() if isinstance(body, (dict, list)) else body
    request = urllib.request.Request(url + path, data=data, headers={"content-type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def _records(X):
    "Rows as JSON clients send them: one object per row, null where a value is missing."
    return json.loads(X.to_json(orient="records"))


def _triton_inputs(X, binary: bool):
    import tritonclient.http as triton

    inputs = []
    for column in X.columns:
        values = X[column].to_numpy()
        if X[column].dtype.kind in "iuf":
            array, datatype = values.reshape(-1, 1).astype(values.dtype), "FP64" if values.dtype.kind == "f" else "INT64"
        else:
            array, datatype = np.array(values, dtype=object).reshape(-1, 1), "BYTES"
        tensor = triton.InferInput(column, list(array.shape), datatype)
        tensor.set_data_from_numpy(array, binary_data=binary)
        inputs.append(tensor)
    return inputs


@pytest.mark.parametrize("binary, compression", [(False, None), (True, None), (True, "gzip"), (False, "deflate")])
def test_tritons_client_gets_the_pipelines_answers(served, binary, compression):
    import tritonclient.http as triton

    X = served["X"].dropna(subset=["island", "sex"]).head(60)  # Triton's BYTES hold strings; missing text goes as JSON null (below)
    client = triton.InferenceServerClient(served["url"].removeprefix("http://"))
    result = client.infer("penguins", _triton_inputs(X, binary), request_compression_algorithm=compression,
                          outputs=[triton.InferRequestedOutput("label", binary_data=False), triton.InferRequestedOutput("probabilities", binary_data=binary)])
    labels = [v.decode() if isinstance(v, bytes) else v for v in result.as_numpy("label").reshape(-1)]
    assert labels == served["pipeline"].predict(X).tolist()
    np.testing.assert_allclose(result.as_numpy("probabilities"), served["pipeline"].predict_proba(X), atol=1e-5)
    metadata = client.get_model_metadata("penguins")
    assert [(i["name"], i["datatype"]) for i in metadata["inputs"]][:2] == [("island", "BYTES"), ("bill_length_mm", "FP64")]


def test_plain_records_with_missing_values_get_the_pipelines_answers(served):
    X = served["X"]
    status, answer = call(served["url"], "/models/penguins/predict", {"inputs": _records(X)})
    assert status == 200, answer
    assert answer["predictions"] == served["pipeline"].predict(X).tolist()
    np.testing.assert_allclose(answer["probabilities"], served["pipeline"].predict_proba(X), atol=1e-5)
    columns = {c: X[c].head(3).tolist() for c in X.columns}  # a list per column, NaN as null
    status, answer = call(served["url"], "/models/penguins/predict", {"inputs": json.loads(json.dumps(columns).replace("NaN", "null"))})
    assert status == 200 and answer["predictions"] == served["pipeline"].predict(X.head(3)).tolist()


def test_served_metadata_and_the_bundles_say_the_same_dtypes(served):
    for name in ("penguins", "forest"):
        status, meta = call(served["url"], f"/v2/models/{name}")
        bundle = json.loads((served["root"] / name / "metadata.json").read_text())
        datatypes = {"float32": "FP32", "float64": "FP64", "string": "BYTES"}
        assert [(o["name"], o["datatype"]) for o in meta["outputs"]] == [(o["name"], datatypes[o["dtype"]]) for o in bundle["outputs"]]


def _all_at_once(url, path, bodies) -> list:
    "(status, parsed JSON body) of each request, every one sent on its own connection before any answer is read."
    import http.client
    from urllib.parse import urlsplit

    where = urlsplit(url)
    connections = [http.client.HTTPConnection(where.hostname, where.port, timeout=30) for _ in bodies]
    for c in connections:
        c.connect()
    for c, body in zip(connections, bodies):
        c.request("POST", path, json.dumps(body), {"content-type": "application/json"})
    answers = []
    for c in connections:
        r = c.getresponse()
        answers.append((r.status, json.loads(r.read())))
        c.close()
    return answers


def _batches(url, model) -> float:
    "How many model calls the server has made for `model`, from its metrics."
    with urllib.request.urlopen(url + "/metrics") as r:
        rows = [line for line in r.read().decode().splitlines() if line.startswith(f'workbench_batch_rows_count{{model="{model}"}}')]
    return float(rows[0].split()[-1]) if rows else 0.0


def test_a_bert_answers_many_clients_sentences_of_many_lengths_as_the_model(served):
    lengths = [3, 17, 8, 8, 25, 1, 12, 30, 5, 9] * 4
    batches = [_padded_batch([n], seed=i) for i, n in enumerate(lengths)]
    bodies = [{"inputs": [{"name": k, "shape": list(v.shape), "datatype": "INT64", "data": v.ravel().tolist()} for k, v in b.items()]}
              for b in batches]
    with torch.no_grad():
        want = [served["bert"](**{k: torch.from_numpy(v) for k, v in b.items()}).logits.numpy() for b in batches]
    shared = False
    for _ in range(3):  # all sent before any is read, so requests wait while a call runs; on a busy machine, try again
        before = _batches(served["url"], "bert")
        for (status, answer), logits in zip(_all_at_once(served["url"], "/v2/models/bert/infer", bodies), want):
            assert status == 200, answer
            output = {o["name"]: o for o in answer["outputs"]}["output"]
            np.testing.assert_allclose(np.reshape(output["data"], output["shape"]), logits, atol=1e-5)
        if shared := _batches(served["url"], "bert") - before < len(lengths):
            break
    assert shared, "40 requests sent at once never shared a model call: sentences of other lengths should be padded into one"


def _penguin(**change):
    X = penguins()[0].head(1)
    return [{**_records(X)[0], **change}]


BAD = [  # (path, body, headers, status, message)
    ("/models/penguins/predict", {"inputs": [{k: v for k, v in _penguin()[0].items() if k != "island"}]}, {}, 400, "missing column 'island'"),
    ("/models/penguins/predict", {"inputs": _penguin(colour="red")}, {}, 400, "unknown column 'colour'"),
    ("/models/penguins/predict", {"inputs": _penguin(island=7)}, {}, 400, "column 'island' takes text; row 0 holds 7"),
    ("/models/penguins/predict", {"inputs": _penguin(body_mass_g="heavy")}, {}, 400, "column 'body_mass_g' takes numbers"),
    ("/models/penguins/predict", {"inputs": _penguin(year=None)}, {}, 400, "column 'year' is missing in row 0"),
    ("/v2/models/penguins/infer", {"inputs": [{"name": "island", "shape": [1], "datatype": "BYTES", "data": [3]}]}, {}, 400,
     "input 'island' is BYTES: its data must be a list of strings"),
    ("/v2/models/bert/infer", {"inputs": [{"name": "input_ids", "shape": [1, 4], "datatype": "INT64", "data": [1, 2, 3, 4]},
                                          {"name": "attention_mask", "shape": [1, 3], "datatype": "INT64", "data": [1, 1, 1]}]}, {}, 400,
     "'attention_mask' has sequence 3, but 'input_ids' has 4"),
    ("/v2/models/bert/infer", {"inputs": [{"name": "input_ids", "shape": [1, 4], "datatype": "INT64", "data": [1, 2, 3, 4]}]}, {}, 400,
     "missing input 'attention_mask'"),
    ("/models/penguins/predict", gzip.compress(b" " * 3 * 2**20), {"content-encoding": "gzip"}, 413, "decompresses to more than 1,048,576 bytes"),
    ("/models/penguins/predict", zlib.compress(b"{" * 2**21), {"content-encoding": "deflate"}, 413, "decompresses to more than"),
    ("/models/penguins/predict", b"{}", {"content-encoding": "br"}, 415, "Content-Encoding 'br' is not one this server reads"),
    ("/models/penguins/predict", b"not gzip", {"content-encoding": "gzip"}, 400, "not valid gzip"),
]


@pytest.mark.parametrize("path, body, headers, status, message", BAD, ids=[b[4][:40] for b in BAD])
def test_a_bad_request_gets_a_4xx_naming_the_fix_and_the_server_keeps_serving(served, path, body, headers, status, message):
    got, answer = call(served["url"], path, body, headers)
    assert got == status and message in answer["error"], answer
    assert call(served["url"], "/models/penguins/predict", {"inputs": _penguin()})[0] == 200


def test_the_traffic_log_keeps_text_as_text_and_monitoring_reads_it(served):
    X = served["X"]
    shifted = X.assign(island="Dream", bill_length_mm=X["bill_length_mm"] + 8)  # another world: one island, longer bills
    for rows in (X.head(40), shifted):
        assert call(served["url"], "/models/penguins/predict", {"inputs": _records(rows)})[0] == 200
    served["server"].stop()  # the log is written whole at a graceful stop
    traffic = read_traffic(served["traffic"], model="penguins")
    assert traffic["island"].dtype.kind in "OUT" or str(traffic["island"].dtype) in ("str", "string")
    assert {"Dream", "Biscoe"} <= set(traffic["island"].dropna()) and traffic["sex"].isna().any()
    report = monitor(X, traffic, model=served["root"] / "penguins")
    drifted = set(report.features.loc[report.features["drift"], "column"])
    assert {"island", "bill_length_mm"} <= drifted, report.features
    assert "sex" not in drifted and report.drift

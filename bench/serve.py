"""Serving: `workbench serve` against a plain FastAPI + uvicorn handler, measured with wrk in the same run.

Three models built in code (no weight downloads): an MLP on 32 features, the small CNN on 1x28x28 images (conv 1->16
and 16->32, 3x3, max-pool, global average pool, linear to 10 classes) and a ResNet-18-sized CNN on 3x64x64 images.
Each is exported to a bundle and served three ways, one worker process each:

- plain: the reference, a FastAPI app written below that parses the body, calls ONNX Runtime once per request and
  returns the outputs as JSON (what a data scientist writes by hand);
- workbench: `workbench serve BUNDLE` as it starts by default (batching up to 32 rows, access log on);
- unbatched: `workbench serve BUNDLE --max-batch 1`.

wrk (Debian's package) sends batch-1 requests, JSON bodies and .npy bodies, at 32 connections and at 1 connection,
for a few seconds each. Printed: requests/s, p50, p99, and ratios to the plain handler in the same run. The small
CNN's headline (JSON, 32 connections) runs three times, servers alternating, and the medians are compared.
Targets: small CNN at 32 connections >= 2x the plain handler's requests/s with p99 no worse; at 1 connection p50
within 1.1x of the plain handler's; ResNet-18 with batching >= 2x without. Then the cold start of the serverless
handler (a new process: import + load), target < 1.5 s.

Named inputs: a scikit-learn pipeline fitted on the Palmer penguins (island and sex as text, NaN in measurements;
imputers, a one-hot encoder, a scaler and a logistic regression), asked with one JSON record per request, and a
BERT of a small config (2 layers, hidden 128, 4 heads) that takes `input_ids` and an `attention_mask` of 32 tokens.
The plain handler does the same work by hand (reads the record or the tensors, builds ONNX Runtime's inputs, one call
per request). Printed: req/s at 32 connections and the ratio (target >= 2x), and each bundle's export and load time.
Hot swap: the small CNN served as `models:/cnn@production` under wrk (32 connections); the same length of load with
the alias moved to a second version one second in, against one without a move, alternating, medians of three.
Printed: req/s of the window with the swap as a share of the one without (target >= 0.95), and non-2xx (target 0).
Shadow: the champion's p50 with a shadow beside it (as fast as the champion) against the same server without one, at
100 req/s and at saturation (target <= 1.1x at both).
Run: `make bench` or `.venv/bin/python bench/serve.py` (`--quick` for shorter runs, `--named`, `--swap` or `--shadow`
for that part alone).
"""
import io
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).parent))
from export import resnet18  # noqa: E402  the ResNet-18-sized CNN of bench/export.py

from workbench.deploy import deploy  # noqa: E402
from workbench.export import export  # noqa: E402

QUICK = "--quick" in sys.argv
SECONDS = {32: 3 if QUICK else 6, 1: 2 if QUICK else 4}
BIN = Path(sys.executable).parent

PLAIN = '''
import io, json, os
import numpy as np
import onnxruntime as ort
from fastapi import FastAPI, Request

session = ort.InferenceSession(os.environ["BUNDLE"] + "/model.onnx", providers=["CPUExecutionProvider"])
name = session.get_inputs()[0].name
app = FastAPI()

@app.post("/predict")
async def predict(request: Request):
    body = await request.body()
    if request.headers.get("content-type") == "application/x-npy":
        x = np.load(io.BytesIO(body), allow_pickle=False)
    else:
        x = np.asarray(json.loads(body)["inputs"], dtype=np.float32)
    return {"predictions": session.run(None, {name: x})[0].tolist()}
'''

PLAIN_NAMED = '''
import json, os
import numpy as np
import onnxruntime as ort
from fastapi import FastAPI, Request

session = ort.InferenceSession(os.environ["BUNDLE"] + "/model.onnx", providers=["CPUExecutionProvider"])
types = {i.name: {"tensor(string)": object, "tensor(double)": np.float64, "tensor(float)": np.float32}.get(i.type, np.int64)
         for i in session.get_inputs()}
app = FastAPI()

def column(values, dtype):
    if dtype is object:  # text: missing as "", as the graph spells it
        return np.array(["" if v is None else v for v in values], dtype=object).reshape(-1, 1)
    return np.array([np.nan if v is None else v for v in values], dtype=dtype).reshape(-1, 1)

@app.post("/predict")
async def predict(request: Request):
    inputs = json.loads(await request.body())["inputs"]
    if isinstance(inputs, list):  # records: a column per input
        feed = {name: column([r[name] for r in inputs], dtype) for name, dtype in types.items()}
    else:
        feed = {name: np.asarray(inputs[name], dtype=dtype) for name, dtype in types.items()}
    outs = session.run(None, feed)
    return {"predictions": outs[0].tolist(), **({"probabilities": outs[1].tolist()} if len(outs) > 1 else {})}
'''

MODELS = {
    "mlp": (lambda: nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 2)), (32,)),
    "small cnn 28x28": (lambda: nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(),
                                              nn.MaxPool2d(2), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10)), (1, 28, 28)),
    "resnet-18 size": (resnet18, (3, 64, 64)),
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(kind: str, bundle: Path, tmp: Path) -> tuple:
    "Start one server; (process, url) once it answers."
    port = free_port()
    if kind in ("plain", "plain-named"):
        (tmp / "plain_app.py").write_text(PLAIN if kind == "plain" else PLAIN_NAMED)
        command = [BIN / "uvicorn", "plain_app:app", "--port", str(port), "--log-level", "warning", "--no-access-log"]
        env = {**os.environ, "BUNDLE": str(bundle), "PYTHONPATH": str(tmp)}
    else:
        command = [BIN / "workbench", "serve", bundle, "--port", str(port), *(["--max-batch", "1"] if kind == "unbatched" else [])]
        env = dict(os.environ)
    process = subprocess.Popen(list(map(str, command)), env=env, cwd=tmp, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url, deadline = f"http://127.0.0.1:{port}", time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            request = urllib.request.Request(url + "/predict", data=(tmp / "body.json").read_bytes(), headers={"content-type": "application/json"})
            urllib.request.urlopen(request, timeout=2)
            return process, url
        except OSError:
            time.sleep(0.2)
    process.kill()
    sys.exit(f"{kind} server did not start")


def wrk(url: str, body: Path, content_type: str, connections: int) -> dict:
    script = body.with_suffix(".lua")
    script.write_text(f'wrk.method = "POST"\nwrk.headers["Content-Type"] = "{content_type}"\n'
                      f'local f = io.open("{body}", "rb"); wrk.body = f:read("*a"); f:close()\n')
    out = subprocess.run(["wrk", f"-t{min(2, connections)}", f"-c{connections}", f"-d{SECONDS[connections]}s", "--latency",
                          "-s", str(script), url + "/predict"], capture_output=True, text=True).stdout

    def ms(label):
        value, unit = re.search(rf"{label}\s+([\d.]+)(us|ms|s)\b", out).groups()
        return float(value) * {"us": 1e-3, "ms": 1, "s": 1e3}[unit]

    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)), "p50": ms("50%"), "p99": ms("99%"),
            "errors": int(errors.group(1)) if errors else 0}


def measure(kind, bundle, tmp, bodies, connections) -> dict:
    process, url = start(kind, bundle, tmp)
    try:
        return {(fmt, c): wrk(url, path, ctype, c) for fmt, (path, ctype) in bodies.items() for c in connections}
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(30)


def line(label, r, ref=None) -> str:
    text = f"    {label:<11} {r['rps']:9,.0f} req/s  p50 {r['p50']:7.2f} ms  p99 {r['p99']:7.2f} ms"
    if r["errors"]:
        text += f"  ({r['errors']} non-2xx)"
    if ref:
        text += f"  | req/s {r['rps'] / ref['rps']:.2f}x  p50 {r['p50'] / ref['p50']:.2f}x  p99 {r['p99'] / ref['p99']:.2f}x of plain"
    return text


def serve_models(tmp: Path) -> dict:
    torch.manual_seed(0)
    results = {}
    for name, (make, shape) in MODELS.items():
        bundle = export(make().eval(), torch.randn(4, *shape), tmp / name.replace(" ", "-"), formats=["onnx"])
        x = np.random.default_rng(0).random((1, *shape), dtype=np.float32)
        (tmp / "body.json").write_text(json.dumps({"inputs": x.round(4).tolist()}))
        buffer = io.BytesIO()
        np.save(buffer, x)
        (tmp / "body.npy").write_bytes(buffer.getvalue())
        bodies = {"json": (tmp / "body.json", "application/json"), "npy": (tmp / "body.npy", "application/x-npy")}
        print(f"{name}: input {list(shape)}, JSON body {(tmp / 'body.json').stat().st_size:,} bytes", flush=True)
        runs = {kind: measure(kind, bundle.path, tmp, bodies, (32, 1)) for kind in ("plain", "workbench", "unbatched")}
        for fmt in bodies:
            for c in (32, 1):
                print(f"  {fmt}, {c} connection{'s' * (c > 1)}:")
                for kind in runs:
                    print(line(kind, runs[kind][fmt, c], None if kind == "plain" else runs["plain"][fmt, c]))
        results[name] = (bundle.path, runs)
    return results


def headline(bundle: Path, tmp: Path) -> dict:
    "The small CNN, JSON, 32 connections: plain and workbench alternately, three rounds; the medians."
    x = np.random.default_rng(0).random((1, 1, 28, 28), dtype=np.float32)
    (tmp / "body.json").write_text(json.dumps({"inputs": x.round(4).tolist()}))
    bodies = {"json": (tmp / "body.json", "application/json")}
    rounds = {"plain": [], "workbench": []}
    for _ in range(3):
        for kind in rounds:
            rounds[kind].append(measure(kind, bundle, tmp, bodies, (32,))["json", 32])
    return {kind: {k: statistics.median(r[k] for r in runs) for k in ("rps", "p50", "p99", "errors")} for kind, runs in rounds.items()}


def _penguins():
    import palmerpenguins
    from sklearn.compose import make_column_transformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    frame = palmerpenguins.load_penguins()
    species = frame.pop("species")
    text = ["island", "sex"]
    numbers = [c for c in frame.columns if c not in text]
    pipeline = make_pipeline(make_column_transformer(
        (make_pipeline(SimpleImputer(strategy="most_frequent"), OneHotEncoder(handle_unknown="ignore")), text),
        (make_pipeline(SimpleImputer(), StandardScaler()), numbers)), LogisticRegression(max_iter=5000)).fit(frame, species)
    record = json.loads(frame.head(1).to_json(orient="records"))
    return pipeline, frame.head(20), {"inputs": record}


def _bert():
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    config = BertConfig(vocab_size=1000, hidden_size=128, num_hidden_layers=2, num_attention_heads=4, intermediate_size=256,
                        max_position_embeddings=128, num_labels=2)
    model = BertForSequenceClassification(config).eval()
    ids = torch.randint(1, 1000, (4, 32))
    sample = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    return model, sample, {"inputs": {"input_ids": ids[:1].tolist(), "attention_mask": [[1] * 32]}}


def named_models(tmp: Path):
    "The penguins pipeline and the BERT: export and load times, then req/s at 32 connections against the plain handler."
    from workbench.export import load

    for name, make, options in (("penguins pipeline", _penguins, {}), ("bert, 32 tokens", _bert, {"dynamic_axes": {1: "sequence"}})):
        model, sample, body = make()
        start = time.perf_counter()
        bundle = export(model, sample, tmp / name.split(",")[0].replace(" ", "-"), formats=["onnx"], **options)
        exported = time.perf_counter() - start
        start = time.perf_counter()
        load(bundle.path)
        loaded = time.perf_counter() - start
        (tmp / "body.json").write_text(json.dumps(body))
        bodies = {"json": (tmp / "body.json", "application/json")}
        runs = {kind: measure(kind, bundle.path, tmp, bodies, (32,))["json", 32] for kind in ("plain-named", "workbench")}
        print(f"{name}: export {exported:.2f} s, load {loaded:.3f} s; inputs {[i['name'] for i in bundle.metadata['inputs']]}")
        print(line("plain", runs["plain-named"]))
        print(line("workbench", runs["workbench"], runs["plain-named"]))
        print(f"  {name}, 32 connections: {runs['workbench']['rps'] / runs['plain-named']['rps']:.2f}x the plain handler's req/s (target >= 2x)", flush=True)


def hot_swap(tmp: Path):
    "req/s under load with the alias moved in the middle, against the same load with no move; non-2xx answers."
    from workbench.registry import promote, register

    os.environ["WORKBENCH_RUNS_DB"] = str(tmp / "runs.db")
    make, shape = MODELS["small cnn 28x28"]
    for seed in (0, 1):
        torch.manual_seed(seed)
        register(export(make().eval(), torch.randn(4, *shape), tmp / f"cnn-{seed}", formats=["onnx"]).path, name="cnn")
    x = np.random.default_rng(0).random((1, *shape), dtype=np.float32)
    (tmp / "body.json").write_text(json.dumps({"inputs": x.round(4).tolist()}))
    promote("cnn", 1, "production")
    port = free_port()
    process = subprocess.Popen([str(BIN / "workbench"), "serve", "models:/cnn@production", "--port", str(port), "--watch-seconds", "0.2",
                                "--no-access-log"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url, runs = f"http://127.0.0.1:{port}", {"steady": [], "swap": []}
    try:
        for _ in range(120):
            try:
                urllib.request.urlopen(urllib.request.Request(url + "/predict", data=(tmp / "body.json").read_bytes(),
                                                              headers={"content-type": "application/json"}), timeout=2)
                break
            except OSError:
                time.sleep(0.5)
        for i in range(3):
            for kind in runs:
                if kind == "swap":  # one second in, the alias moves to the other version
                    threading.Timer(1.0, promote, ("cnn", 2 if i % 2 == 0 else 1, "production")).start()
                runs[kind].append(wrk(url, tmp / "body.json", "application/json", 32))
                time.sleep(0.5)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(30)
    steady, swap = (statistics.median(r["rps"] for r in runs[k]) for k in ("steady", "swap"))
    errors = sum(r["errors"] for k in runs for r in runs[k])
    print(line("steady", {k: statistics.median(r[k] for r in runs["steady"]) for k in ("rps", "p50", "p99", "errors")}))
    print(line("swapping", {k: statistics.median(r[k] for r in runs["swap"]) for k in ("rps", "p50", "p99", "errors")}))
    print(f"  hot swap under 32 connections: {swap / steady:.3f}x the req/s without one (target >= 0.95), {errors} non-2xx (target 0)", flush=True)


def _paced(url: str, body: bytes, rate: float, seconds: float) -> float:
    "p50 latency (ms) of requests sent at `rate` per second on one kept-alive connection, each on its schedule."
    import http.client

    host, port = url.rsplit("//", 1)[1].split(":")
    connection, times = http.client.HTTPConnection(host, int(port), timeout=10), []
    start = time.perf_counter()
    for i in range(int(rate * seconds)):
        time.sleep(max(0.0, start + i / rate - time.perf_counter()))
        sent = time.perf_counter()
        connection.request("POST", "/predict", body, {"content-type": "application/json"})
        response = connection.getresponse()
        response.read()
        assert response.status == 200, response.status
        times.append(time.perf_counter() - sent)
    connection.close()
    return statistics.median(times) * 1000


def shadow(tmp: Path):
    """The champion's p50 with a shadow beside it against the same server without one: at 100 req/s and at saturation
    (wrk, 32 connections); the shadow is another export of the same small CNN, as fast as the champion. Servers
    alternate, three rounds, medians. Target: <= 1.1x at both."""
    make, shape = MODELS["small cnn 28x28"]
    bundles = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        bundles.append(export(make().eval(), torch.randn(4, *shape), tmp / f"shadow-cnn-{seed}", formats=["onnx"]).path)
    x = np.random.default_rng(0).random((1, *shape), dtype=np.float32)
    (tmp / "body.json").write_text(json.dumps({"inputs": x.round(4).tolist()}))
    body, runs = (tmp / "body.json").read_bytes(), {"alone": [], "with a shadow": []}
    for _ in range(3):
        for kind in runs:
            port = free_port()
            extra = ["--shadow", str(bundles[1])] if kind != "alone" else []
            process = subprocess.Popen([str(BIN / "workbench"), "serve", f"cnn={bundles[0]}", *extra, "--port", str(port), "--no-access-log"],
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            url = f"http://127.0.0.1:{port}"
            try:
                for _ in range(240):
                    try:
                        urllib.request.urlopen(url + "/v2/health/ready", timeout=2)
                        break
                    except OSError:
                        time.sleep(0.5)
                paced = _paced(url, body, 100, 3 if QUICK else 8)
                runs[kind].append((paced, wrk(url, tmp / "body.json", "application/json", 32)["p50"]))
            finally:
                process.send_signal(signal.SIGTERM)
                process.wait(30)
    alone, shadowed = ([statistics.median(r[i] for r in runs[k]) for i in (0, 1)] for k in runs)
    print(f"  shadow: champion p50 at 100 req/s {shadowed[0]:.2f} ms vs {alone[0]:.2f} ms alone ({shadowed[0] / alone[0]:.2f}x, target <= 1.1x); "
          f"at saturation {shadowed[1]:.2f} ms vs {alone[1]:.2f} ms ({shadowed[1] / alone[1]:.2f}x, target <= 1.1x)", flush=True)


def cold_start(bundle: Path, tmp: Path) -> float:
    "Seconds for a new process to import the serverless handler (which loads the bundle); the median of five."
    out = tmp / "function"
    deploy([bundle], target="lambda", out=out)
    code = "import time; start = time.perf_counter(); import handler; print(time.perf_counter() - start)"
    env = {**os.environ, "PYTHONPATH": str(out)}
    return statistics.median(float(subprocess.run([sys.executable, "-c", code], cwd=out, env=env, capture_output=True, text=True,
                                                  check=True).stdout) for _ in range(5))


def main():
    if not shutil.which("wrk"):
        sys.exit("bench/serve.py needs wrk: apt-get install wrk (make bench installs it)")
    tmp = Path(tempfile.mkdtemp(prefix="bench-serve-"))
    try:
        alone = [flag for flag in ("--named", "--swap", "--shadow") if flag in sys.argv]  # one part alone
        if not alone or "--named" in alone:
            named_models(tmp)
        if not alone or "--swap" in alone:
            hot_swap(tmp)
        if not alone or "--shadow" in alone:
            shadow(tmp)
        if alone:
            return
        results = serve_models(tmp)
        cnn, runs = results["small cnn 28x28"]
        best = headline(cnn, tmp)
        resnet = results["resnet-18 size"][1]
        print("\nTargets (same run, same machine):")
        print(line("plain", best["plain"]))
        print(line("workbench", best["workbench"], best["plain"]))
        ratio, p99 = best["workbench"]["rps"] / best["plain"]["rps"], best["workbench"]["p99"] / best["plain"]["p99"]
        print(f"  small CNN, 32 connections, median of 3: {ratio:.2f}x the plain handler's req/s (target >= 2x), p99 {p99:.2f}x (target <= 1x)")
        for name, (_, r) in results.items():
            one = r["workbench"]["json", 1]["p50"] / r["plain"]["json", 1]["p50"]
            print(f"  {name}, 1 connection: p50 {one:.2f}x the plain handler's (target <= 1.1x)")
        gain = resnet["workbench"]["json", 32]["rps"] / resnet["unbatched"]["json", 32]["rps"]
        gain_npy = resnet["workbench"]["npy", 32]["rps"] / resnet["unbatched"]["npy", 32]["rps"]
        print(f"  resnet-18 size, 32 connections: batching {gain:.2f}x (JSON), {gain_npy:.2f}x (npy) the req/s without (target >= 2x)")
        print(f"  serverless handler cold start (import + load, small CNN): {cold_start(cnn, tmp):.2f} s (target < 1.5 s)")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()

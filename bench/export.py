"""Export and inference speed: an MLP, a small CNN and a ResNet-18-sized CNN built in code (no weight downloads).

For each model: seconds per format (safetensors, ONNX, torch.export, each including its parity check), bundle size,
and inference time of the Predictor (ONNX Runtime) against a bare onnxruntime InferenceSession.run and torch eager,
at batch 1 and batch 64, all on the CPU in this run. Target: Predictor.predict within 1.1x of the bare session, so
at least 4x faster than torch eager at batch 1. Then three scikit-learn models (float32 data, so every one exports
to ONNX): export seconds, and Predictor.predict against the bare session on the same graph and against the
estimator's own predict. Run: `make bench` or `.venv/bin/python bench/export.py`.
"""
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from torch import nn

from workbench.export import export, load


def block(cin, cout, stride):
    body = nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(),
                         nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout))
    skip = nn.Identity() if stride == 1 and cin == cout else nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.body, self.skip = body, skip

        def forward(self, x):
            return torch.relu(self.body(x) + self.skip(x))

    return Block()


def resnet18(classes=10):
    layers = [nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(3, 2, 1)]
    cin = 64
    for cout, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
        layers += [block(cin, cout, stride), block(cout, cout, 1)]
        cin = cout
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(512, classes))


MODELS = {
    "mlp": (lambda: nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 2)), (32,)),
    "small cnn": (lambda: nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(),
                                        nn.MaxPool2d(2), nn.Flatten(), nn.Linear(32 * 16, 64), nn.ReLU(), nn.Linear(64, 10)), (1, 8, 8)),
    "resnet-18 size": (resnet18, (3, 64, 64)),
}


def per_call(fn, x, seconds=1.0) -> float:
    fn(x)
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        fn(x)
        n += 1
    return (time.perf_counter() - start) / n


def main():
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        for name, (make, shape) in MODELS.items():
            model = make().eval()
            params = sum(p.numel() for p in model.parameters())
            times = {}
            last = [time.perf_counter()]

            def tick(fmt, state):
                if state != "exporting":
                    times[fmt] = time.perf_counter() - last[0]
                last[0] = time.perf_counter()

            path = Path(tmp) / name.replace(" ", "-")
            bundle = export(model, torch.randn(4, *shape), path, on_format=tick)
            size = sum(f["size"] for f in bundle.files.values())
            print(f"{name}: {params:,} parameters, bundle {size / 2**20:.1f} MiB")
            print("  export seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in times.items()))
            predictor = load(path)
            session = ort.InferenceSession(str(path / "model.onnx"), providers=["CPUExecutionProvider"])
            for batch in (1, 64):
                x = np.random.default_rng(0).standard_normal((batch, *shape)).astype(np.float32)
                xt = torch.from_numpy(x)
                with torch.no_grad():
                    eager = per_call(model, xt)
                bare = per_call(lambda a: session.run(None, {"input": a}), x)
                ours = per_call(predictor.predict, x)
                print(f"  batch {batch:>2}: Predictor {ours * 1e3:8.3f} ms  bare session {bare * 1e3:8.3f} ms  torch eager {eager * 1e3:8.3f} ms"
                      f"  | Predictor/bare {ours / bare:.2f}x (target <= 1.1x)  eager/Predictor {eager / ours:.1f}x")


def sklearn_models():
    from sklearn.datasets import load_breast_cancer, load_diabetes
    from sklearn.ensemble import HistGradientBoostingRegressor, RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    Xc, yc = load_breast_cancer(return_X_y=True)
    Xr, yr = load_diabetes(return_X_y=True)
    Xc, Xr = Xc.astype(np.float32), Xr.astype(np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        for name, est, X, y in [("scaler+logistic", make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)), Xc, yc),
                                ("random forest (100 trees)", RandomForestClassifier(100, random_state=0), Xc, yc),
                                ("hist gradient boosting", HistGradientBoostingRegressor(max_iter=100, random_state=0), Xr, yr)]:
            est.fit(X, y)
            start = time.perf_counter()
            export(est, X[:16], Path(tmp) / "m")
            seconds = time.perf_counter() - start
            predictor = load(Path(tmp) / "m")
            session = ort.InferenceSession(str(Path(tmp) / "m" / "model.onnx"), providers=["CPUExecutionProvider"])
            feed = session.get_inputs()[0].name
            print(f"{name}: export (onnx + skops, checked) {seconds:.1f} s")
            for batch in (1, 64):
                x = X[:batch]
                bare = per_call(lambda a: session.run(None, {feed: a}), x)
                ours = per_call(predictor.predict, x)
                native = per_call(est.predict, x)
                print(f"  batch {batch:>2}: Predictor {ours * 1e3:8.3f} ms  bare session {bare * 1e3:8.3f} ms  estimator.predict "
                      f"{native * 1e3:8.3f} ms  | Predictor/bare {ours / bare:.2f}x (target <= 1.1x)  predict/Predictor {native / ours:.1f}x")
            shutil.rmtree(Path(tmp) / "m")


if __name__ == "__main__":
    main()
    sklearn_models()

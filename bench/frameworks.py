"""Frameworks: what workbench's doors cost over each library's own, measured in the same run.

1. Training a Keras 3 model (torch backend): `Trainer` ÷ Keras's own `model.fit`, on the same network and data, CPU,
   one thread. A 64-256-256-10 network on 20,000 rows, batch 64, Adam at 1e-3, no schedule, no validation, 3 epochs;
   each side builds its model from the same seed, runs once untimed (first-call set-up), then is timed three times
   (medians). Keras is timed with and without `keras_callback(progress=False)`, whose cost is the second ratio.
   Target: Trainer ÷ fit <= 1.05.
2. Predicting one row at a time: the bundle's ONNX Predictor ÷ the library's own `predict`, for XGBoost and LightGBM
   classifiers (200 trees, breast cancer data), 2,000 single-row calls each, after 100 warm-up calls. Lower is better.

Run: `make bench` or `.venv/bin/python bench/frameworks.py`.
"""
import os

os.environ["KERAS_BACKEND"] = "torch"  # before keras is first imported

import statistics
import tempfile
import time
from pathlib import Path

import keras
import lightgbm
import numpy as np
import torch
import xgboost
from sklearn.datasets import load_breast_cancer

from workbench.export import export, load
from workbench.frameworks import keras_callback
from workbench.train import Trainer

ROWS, FEATURES, CLASSES, BATCH, EPOCHS = 20_000, 64, 10, 64, 3


def data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(ROWS, FEATURES)).astype(np.float32)
    y = (x[:, :CLASSES] + 0.5 * rng.normal(size=(ROWS, CLASSES))).argmax(1)
    return x, y


def network():
    keras.utils.set_random_seed(0)
    return keras.Sequential([keras.Input((FEATURES,)), keras.layers.Dense(256, activation="relu"),
                             keras.layers.Dense(256, activation="relu"), keras.layers.Dense(CLASSES)])


def by_trainer(x, y) -> float:
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.from_numpy(x), torch.from_numpy(y)),
                                         batch_size=BATCH, shuffle=True)
    trainer = Trainer(network(), loader, opt=torch.optim.Adam, lr=1e-3, scheduler=None, progress=False)
    start = time.perf_counter()
    trainer.fit(EPOCHS)
    return time.perf_counter() - start


def by_keras(x, y, callbacks=()) -> float:
    model = network()
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    start = time.perf_counter()
    model.fit(x, y, batch_size=BATCH, epochs=EPOCHS, shuffle=True, verbose=0, callbacks=list(callbacks))
    return time.perf_counter() - start


def training():
    x, y = data()
    runs = {"Keras fit": lambda: by_keras(x, y), "Keras fit + keras_callback": lambda: by_keras(x, y, [keras_callback(progress=False)]),
            "Trainer": lambda: by_trainer(x, y)}
    for run in runs.values():
        run()  # first-call set-up on every side
    times = {name: statistics.median(run() for _ in range(3)) for name, run in runs.items()}
    for name, seconds in times.items():
        print(f"  {name:28s} {seconds:6.2f} s")
    print(f"Trainer ÷ Keras fit: {times['Trainer'] / times['Keras fit']:.3f} (target <= 1.05)")
    print(f"keras_callback's cost: {times['Keras fit + keras_callback'] / times['Keras fit']:.3f} x Keras fit alone")


def per_row(predict, rows) -> float:
    for row in rows[:100]:
        predict(row)
    start = time.perf_counter()
    for row in rows:
        predict(row)
    return (time.perf_counter() - start) / len(rows)


def single_rows():
    X, y = load_breast_cancer(return_X_y=True)
    X = X.astype(np.float32)
    rows = [X[i % len(X)][None] for i in range(2000)]
    for model in (xgboost.XGBClassifier(n_estimators=200), lightgbm.LGBMClassifier(n_estimators=200, verbose=-1)):
        model.fit(X, y)
        folder = Path(tempfile.mkdtemp()) / "bundle"
        export(model, X[:16], folder)
        predictor = load(folder)
        own, onnx = per_row(model.predict, rows), per_row(predictor.predict, rows)
        name = type(model).__name__
        print(f"{name}: predict {own * 1e6:.0f} us/row, ONNX Predictor {onnx * 1e6:.0f} us/row: ONNX ÷ own = {onnx / own:.3f}")


def main():
    torch.set_num_threads(1)
    print(f"Training ({ROWS:,} rows x {FEATURES}, batch {BATCH}, {EPOCHS} epochs, 1 thread):")
    training()
    print("Batch 1:")
    single_rows()


if __name__ == "__main__":
    main()

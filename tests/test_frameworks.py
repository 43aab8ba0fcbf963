"""Keras 3 through the same doors as torch: many kinds of model exported and loaded back, Trainer and Keras's own fit
recorded in a run, Ctrl-C, and the backend refused with what to do."""
import os
import signal
import subprocess
import sys

import numpy as np
import pytest
import torch

os.environ["KERAS_BACKEND"] = "torch"  # before keras is first imported
keras = pytest.importorskip("keras")

from conftest import write_notebook  # noqa: E402
from workbench.core import InputError  # noqa: E402
from workbench.export import export, load  # noqa: E402
from workbench.frameworks import keras_callback  # noqa: E402
from workbench.run import run_notebook  # noqa: E402
from workbench.store import RunStore  # noqa: E402
from workbench.train import Callback, Checkpoint, StopTraining, Trainer  # noqa: E402

L = keras.layers


class Unregistered(keras.Model):
    "A subclassed model Keras cannot find by name when it loads a .keras file."

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.hidden, self.out = L.Dense(8, activation="relu"), L.Dense(3)

    def call(self, x):
        return self.out(self.hidden(x))


@keras.saving.register_keras_serializable(package="tests")
class Registered(Unregistered):
    pass


def _attention():
    x = keras.Input((5, 8))
    h = L.LayerNormalization()(L.MultiHeadAttention(2, 4)(x, x) + x)
    return keras.Model(x, L.Dense(2)(L.GlobalAveragePooling1D()(h)))


def _functional():
    x = keras.Input((6,))
    return keras.Model(x, L.Dense(2, activation="softmax")(L.Dropout(0.2)(L.Dense(8, activation="gelu")(x))))


# model, the shape of one row, the formats its bundle must hold
MODELS = {
    "dense-batchnorm": (lambda: keras.Sequential([keras.Input((6,)), L.Dense(8, activation="relu"), L.BatchNormalization(),
                                                  L.Dense(3)]), (6,), {"safetensors", "onnx", "keras"}),
    "functional-dropout": (_functional, (6,), {"safetensors", "onnx", "keras"}),
    "conv2d": (lambda: keras.Sequential([keras.Input((16, 16, 3)), L.Conv2D(4, 3, activation="relu"), L.MaxPooling2D(),
                                         L.GlobalAveragePooling2D(), L.Dense(2)]), (16, 16, 3), {"safetensors", "onnx", "keras"}),
    "lstm": (lambda: keras.Sequential([keras.Input((10, 4)), L.LSTM(8), L.Dense(1)]), (10, 4), {"safetensors", "onnx", "keras"}),
    "gru-sequences": (lambda: keras.Sequential([keras.Input((10, 4)), L.GRU(8, return_sequences=True), L.GlobalAveragePooling1D(),
                                                L.Dense(1)]), (10, 4), {"safetensors", "onnx", "keras"}),
    "attention": (_attention, (5, 8), {"safetensors", "onnx", "keras"}),
    "normalization": (lambda: keras.Sequential([keras.Input((6,)), L.Normalization(mean=0.5, variance=2.0), L.Dense(3)]), (6,),
                      {"safetensors", "onnx", "keras"}),
    "subclassed-registered": (Registered, (6,), {"safetensors", "onnx", "keras"}),
    "subclassed-unregistered": (Unregistered, (6,), {"safetensors", "onnx"}),
    "lambda-layer": (lambda: keras.Sequential([keras.Input((6,)), L.Lambda(lambda v: v * 2), L.Dense(3)]), (6,),
                     {"safetensors", "onnx"}),
}


@pytest.mark.parametrize("name", MODELS)
def test_every_file_of_a_keras_bundle_answers_as_the_model(name, tmp_path):
    make, shape, formats = MODELS[name]
    keras.utils.set_random_seed(0)
    model = make()
    x, other = np.random.rand(4, *shape).astype("float32"), np.random.rand(7, *shape).astype("float32")
    model(x)
    bundle = export(model, x, tmp_path / name)
    assert {f["format"] for f in bundle.files.values()} == formats, bundle.metadata.get("failed")
    expected = keras.ops.convert_to_numpy(model(other, training=False))
    for backend in formats - {"safetensors"} | {"torch"}:
        fresh = make() if backend == "torch" else None  # the architecture; a subclassed one is built by load
        got = load(bundle.path, backend=backend, model=fresh).predict(other)
        np.testing.assert_allclose(got, expected, atol=1e-5, rtol=1e-4, err_msg=backend)
    if "keras" not in formats:  # why it is missing, with what to do
        assert any(hint in bundle.metadata["failed"]["keras"] for hint in ("Layer subclass", "register_keras_serializable"))


def test_export_leaves_the_keras_model_trainable(tmp_path):
    model = MODELS["dense-batchnorm"][0]()
    x, y = np.random.rand(32, 6).astype("float32"), np.random.rand(32, 3).astype("float32")
    model.compile(optimizer="sgd", loss="mse")
    export(model, x[:4], tmp_path / "b")
    before = [w.copy() for w in model.get_weights()]
    model.fit(x, y, epochs=1, verbose=0)
    assert all(w.trainable for w in model.trainable_weights)
    assert any(not np.array_equal(a, b) for a, b in zip(before, model.get_weights()))


def _digits():
    from sklearn.datasets import load_digits

    digits = load_digits()
    return (digits.images / 16.0).astype(np.float32), digits.target


def _network():
    keras.utils.set_random_seed(0)
    return keras.Sequential([keras.Input((8, 8)), L.Flatten(), L.Dense(32, activation="relu"), L.Dropout(0.1), L.Dense(10)])


def test_trainer_trains_a_keras_model_and_resumes_exactly(tmp_path):
    images, labels = _digits()
    data = torch.utils.data.TensorDataset(torch.from_numpy(images), torch.from_numpy(labels))

    class StopAfterTwo(Callback):
        def after_epoch(self, t):
            if t.epoch == 2:
                raise StopTraining

    def trainer(*callbacks):
        loaders = (torch.utils.data.DataLoader(torch.utils.data.Subset(data, range(1400)), batch_size=64, shuffle=True),
                   torch.utils.data.DataLoader(torch.utils.data.Subset(data, range(1400, 1797)), batch_size=128))
        return Trainer(_network(), *loaders, metrics=["accuracy"], lr=1e-2, progress=False, seed=0, callbacks=list(callbacks))

    straight = trainer()
    straight.fit(4)
    trainer(Checkpoint(tmp_path), StopAfterTwo()).fit(4)  # stopped after two of four epochs, as a killed run would be
    resumed = trainer()
    resumed.fit(4, resume=tmp_path / "last.ckpt")
    assert straight.history["valid_loss"].tolist() == resumed.history["valid_loss"].tolist()
    assert straight.last_metrics()["accuracy"] > 0.85
    for a, b in zip(straight.model.get_weights(), resumed.model.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_keras_fit_inside_a_run_records_each_epoch(tmp_path):
    nb = write_notebook(
        tmp_path / "keras.ipynb",
        "import os\nos.environ['KERAS_BACKEND'] = 'torch'\nimport keras, numpy as np\n"
        "from workbench.frameworks import keras_callback\n"
        "x, y = np.random.rand(256, 6).astype('float32'), np.random.randint(0, 2, 256)\n"
        "model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(2)])\n"
        "model.compile(optimizer='adam', loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=['accuracy'])\n"
        "model.fit(x, y, validation_split=0.25, epochs=3, verbose=0, callbacks=[keras_callback()])")
    run = run_notebook(nb, out_dir=tmp_path / "out", html=False)
    assert run.ok, run.describe_error()
    store = RunStore()
    assert store.history(run.id, "valid_loss")["step"].tolist() == [1, 2, 3, 3]  # each epoch, then the last once more
    assert {"train_loss", "valid_loss", "accuracy", "train_accuracy"} <= set(run.metrics)


def test_ctrl_c_stops_keras_fit_at_a_batch_boundary(capsys):
    images, labels = _digits()
    model = _network()
    model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    press = keras.callbacks.LambdaCallback(on_train_batch_end=lambda batch, logs: batch == 3 and os.kill(os.getpid(), signal.SIGINT))
    handler = signal.getsignal(signal.SIGINT)
    history = model.fit(images, labels, batch_size=32, epochs=5, verbose=0, callbacks=[keras_callback(), press])
    assert len(history.history["loss"]) == 1  # stopped in the first epoch, not by a KeyboardInterrupt
    assert "stopped after epoch 1 (interrupted)" in capsys.readouterr().out
    assert signal.getsignal(signal.SIGINT) is handler  # the previous handler is back
    assert np.isfinite(keras.ops.convert_to_numpy(model(images[:4]))).all()


def test_keras_progress_writes_a_line_per_epoch(capsys):
    images, labels = _digits()
    model = _network()
    model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    model.fit(images[:512], labels[:512], validation_split=0.25, epochs=2, verbose=0, callbacks=[keras_callback()])
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("epoch")]
    assert len(lines) == 2 and lines[0].startswith("epoch 1/2") and "valid_loss" in lines[0] and "accuracy" in lines[0]


@pytest.mark.parametrize("backend", ["numpy", "jax", "tensorflow"])
def test_another_keras_backend_is_refused_with_what_to_do(backend):
    code = (f"import os; os.environ['KERAS_BACKEND'] = {backend!r}\n"
            "from workbench.frameworks import keras_callback\nkeras_callback()")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode != 0 and "InputError" in out.stderr
    assert "set KERAS_BACKEND=torch before keras is first imported" in out.stderr, out.stderr[-800:]


def _hugging_face_models():
    T = pytest.importorskip("transformers")
    small = dict(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32, max_position_embeddings=32)
    gpt2 = dict(vocab_size=50, n_embd=16, n_layer=1, n_head=2, n_positions=32)
    return {
        "bert-sequence": lambda: T.BertForSequenceClassification(T.BertConfig(**small, num_labels=3)),
        "distilbert-sequence": lambda: T.DistilBertForSequenceClassification(T.DistilBertConfig(
            vocab_size=50, dim=16, n_layers=1, n_heads=2, hidden_dim=32, max_position_embeddings=32)),
        "roberta-token": lambda: T.RobertaForTokenClassification(T.RobertaConfig(**small, num_labels=4, pad_token_id=1)),
        "electra-sequence": lambda: T.ElectraForSequenceClassification(T.ElectraConfig(**small, embedding_size=16)),
        "gpt2-language-model": lambda: T.GPT2LMHeadModel(T.GPT2Config(**gpt2)),  # its key/value cache left out
        "gpt2-sequence": lambda: T.GPT2ForSequenceClassification(T.GPT2Config(**gpt2, pad_token_id=0)),
        "vit-image": lambda: T.ViTForImageClassification(T.ViTConfig(image_size=16, patch_size=8, hidden_size=16, num_hidden_layers=1,
                                                                      num_attention_heads=2, intermediate_size=32, num_labels=3)),
    }


@pytest.mark.parametrize("name", ["bert-sequence", "distilbert-sequence", "roberta-token", "electra-sequence",
                                  "gpt2-language-model", "gpt2-sequence", "vit-image"])
def test_hugging_face_models_export_and_answer_with_their_logits(name, tmp_path):
    torch.manual_seed(0)
    make = _hugging_face_models()[name]
    model = make()
    x = torch.rand(4, 3, 16, 16) if name.startswith("vit") else torch.randint(2, 50, (4, 12))
    bundle = export(model, x, tmp_path / name)
    assert set(bundle.files) == {"model.safetensors", "model.onnx", "model.pt2"}, bundle.metadata["failed"]
    model.eval()
    with torch.no_grad():
        expected = model(x).logits.numpy()
    for backend, kwargs in (("onnx", {}), ("pt2", {"trusted": ["pt2"]}), ("torch", {"model": make()})):
        got = load(tmp_path / name, backend=backend, **kwargs).predict(x.numpy())
        np.testing.assert_allclose(got, expected, atol=1e-5, err_msg=backend)
    if name.startswith("gpt2"):
        assert model.config.use_cache  # the exported copy left its cache out; the model keeps it for generation


def test_a_model_that_takes_more_than_one_tensor_is_refused_with_the_reason(tmp_path):
    T = pytest.importorskip("transformers")
    t5 = T.T5ForConditionalGeneration(T.T5Config(vocab_size=50, d_model=16, d_kv=8, d_ff=32, num_layers=1, num_heads=2))
    with pytest.raises(InputError, match="cannot run on the sample of shape .4, 12.*input_ids or inputs_embeds"):
        export(t5, torch.randint(2, 50, (4, 12)), tmp_path / "t5")
    assert not (tmp_path / "t5").exists()


def test_keras_and_hugging_face_bundles_are_served_and_evaluated(tmp_path):
    import json
    import urllib.request

    from workbench.evaluate import evaluate
    from workbench.serve import serve

    images, labels = _digits()
    model = _network()
    model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    model.fit(images[:1400], labels[:1400], epochs=3, verbose=0)
    export(model, images[:8], tmp_path / "digits", classes=list(range(10)))
    T = pytest.importorskip("transformers")
    torch.manual_seed(0)
    bert = T.BertForSequenceClassification(T.BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                                        intermediate_size=32, max_position_embeddings=16, num_labels=2))
    ids = torch.randint(2, 50, (16, 12))
    export(bert, ids[:8], tmp_path / "bert", dynamic_axes={1: "sequence"})
    with serve({"digits": tmp_path / "digits", "bert": tmp_path / "bert"}) as server:
        for name, rows in (("digits", images[1400:1420]), ("bert", ids.numpy()), ("bert", ids.numpy()[:4, :5])):
            request = urllib.request.Request(f"{server.url}/models/{name}/predict", data=json.dumps({"inputs": rows.tolist()}).encode(),
                                             headers={"content-type": "application/json"})
            with urllib.request.urlopen(request, timeout=30) as r:
                answer = json.loads(r.read())
            want = load(tmp_path / name).predict(rows)
            got = answer["predictions"]
            if name == "digits":  # a classifier's labels, from the bundle's classes
                assert got == want.argmax(1).tolist()
            else:
                np.testing.assert_allclose(got, want, atol=1e-5)
    result = evaluate(tmp_path / "digits", images[1400:], labels[1400:], resamples=50)
    assert result.task == "classification" and result.metrics["accuracy"] > 0.8


def test_trainer_takes_a_compiled_keras_models_loss_and_metrics():
    images, labels = _digits()
    data = torch.utils.data.TensorDataset(torch.from_numpy(images), torch.from_numpy(labels))
    loaders = (torch.utils.data.DataLoader(torch.utils.data.Subset(data, range(1400)), batch_size=64, shuffle=True),
               torch.utils.data.DataLoader(torch.utils.data.Subset(data, range(1400, 1797)), batch_size=128))
    model = _network()
    model.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy", keras.metrics.SparseTopKCategoricalAccuracy(3, name="top3")])
    t = Trainer(model, *loaders, lr=1e-2, progress=False)
    t.fit(3)
    row = t.last_metrics()
    assert row["accuracy"] > 0.8 and row["top3"] >= row["accuracy"] and row["top3"] > 0.9

    x = np.random.default_rng(0).normal(size=(512, 6)).astype("float32")
    y = (x @ np.arange(1, 7, dtype="float32") / 10)[:, None]
    regression = keras.Sequential([keras.Input((6,)), L.Dense(1)])
    regression.compile(loss="mse", metrics=["mae", "root_mean_squared_error"])
    data = torch.utils.data.TensorDataset(torch.from_numpy(x), torch.from_numpy(y))
    t = Trainer(regression, torch.utils.data.DataLoader(data, batch_size=32, shuffle=True), torch.utils.data.DataLoader(data, batch_size=128),
                lr=0.1, progress=False)
    t.fit(5)
    row = t.last_metrics()
    assert row["valid_loss"] < 0.05 * y.var() and abs(row["root_mean_squared_error"] ** 2 - row["valid_loss"]) < 0.05 * row["valid_loss"] + 1e-3


def test_a_keras_model_of_two_inputs_trains_on_tuple_batches():
    keras.utils.set_random_seed(0)  # Keras's initializers, and torch's data
    a, b = keras.Input((4,)), keras.Input((3,))
    model = keras.Model([a, b], L.Dense(2)(L.Concatenate()([L.Dense(8, activation="relu")(a), b])))
    x1, x2 = torch.randn(256, 4), torch.randn(256, 3)
    y = ((x1[:, 0] + x2[:, 0]) > 0).long()
    dl = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x1, x2, y), batch_size=32)
    t = Trainer(model, dl, dl, metrics=["accuracy"], lr=1e-2, progress=False)  # the inputs counted from the model's own
    t.fit(10)
    assert t.last_metrics()["accuracy"] > 0.85 and t.predict(dl).shape == (256, 2)


def _train_keras(batch_size):
    "Two epochs of a small Keras network, from the same seed: its weights and losses (run in each rank by launch)."
    from workbench.train import synth_classification

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8,)), L.Dense(16, activation="relu"), L.Dense(3)])
    t = Trainer(model, synth_classification(n=640, batch_size=batch_size)[0], lr=1e-2, scheduler=None, progress=False)
    t.fit(2)
    return [np.array(w) for w in model.get_weights()], list(t.history["train_loss"])


def test_a_keras_model_trains_on_two_processes_as_on_one():
    from workbench.distributed import launch

    single = _train_keras(64)
    ranks = launch(_train_keras, 32, nprocs=2)  # DistributedDataParallel on gloo, half the batch each
    for a, b, c in zip(ranks[0][0], ranks[1][0], single[0]):
        np.testing.assert_array_equal(a, b)  # the ranks stay in step
        np.testing.assert_allclose(a, c, atol=1e-5)  # and agree with one process on the whole batch
    np.testing.assert_allclose(ranks[0][1], single[1], rtol=1e-5)



@pytest.mark.parametrize("name", ["bert-sequence", "distilbert-sequence", "roberta-token", "gpt2-language-model"])
def test_a_sequence_of_any_length_with_dynamic_axes(name, tmp_path):
    torch.manual_seed(0)
    model = _hugging_face_models()[name]().eval()
    bundle = export(model, torch.randint(2, 50, (4, 12)), tmp_path / name, dynamic_axes={1: "sequence"})
    assert bundle.metadata["inputs"][0]["shape"] == ["batch", "sequence"] and {"model.onnx", "model.pt2"} <= set(bundle.files)
    for backend in ("onnx", "pt2"):
        predictor = load(tmp_path / name, backend=backend, trusted=["pt2"])
        for length in (3, 20):
            x = torch.randint(2, 50, (2, length))
            with torch.no_grad():
                np.testing.assert_allclose(predictor.predict(x.numpy()), model(x).logits.numpy(), atol=1e-5, err_msg=f"{backend} {length}")
    with pytest.raises(InputError, match=r"does not fit the model: expected \(batch, sequence\)"):
        load(tmp_path / name).predict(np.zeros((2, 3, 4), dtype=np.int64))


def test_a_model_of_fixed_length_refuses_dynamic_axes_with_the_reason(tmp_path):
    model = torch.nn.Sequential(torch.nn.Embedding(50, 4), torch.nn.Flatten(), torch.nn.Linear(12 * 4, 2))
    with pytest.raises(InputError, match=r"a batch of shape \(4, 11\) \(the sample with its sequence one shorter"):
        export(model, torch.randint(0, 50, (4, 12)), tmp_path / "fixed", dynamic_axes={1: "sequence"})
    with pytest.raises(InputError, match="for torch and Keras models"):
        from sklearn.linear_model import LogisticRegression

        export(LogisticRegression().fit(np.random.rand(20, 3), np.arange(20) % 2), np.random.rand(4, 3), tmp_path / "sk",
               dynamic_axes={1: "features"})
    assert not list(tmp_path.iterdir())

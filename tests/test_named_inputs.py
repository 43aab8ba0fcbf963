"""Bundles of named inputs, on the shapes real models take: scikit-learn pipelines fitted on frames with text
columns (and XGBoost and LightGBM on `category` columns), and Hugging Face models that take `input_ids` with an
`attention_mask`.

Each tabular pipeline is fitted on a real or realistically messy frame (`frames.py`), exported from a few of its
rows, loaded back, and must answer every row of the frame as the pipeline does: labels equal, probabilities within
1e-5, whichever format the bundle answers from. Missing text, missing numbers and text never seen in fitting are
among those rows.
"""
import numpy as np
import pytest
import torch
from sklearn.compose import make_column_transformer
from sklearn.ensemble import GradientBoostingClassifier, HistGradientBoostingClassifier, RandomForestClassifier, RandomForestRegressor
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, StandardScaler, TargetEncoder
from sklearn.svm import LinearSVC

from frames import customers, penguins
from workbench.core import InputError
from workbench.evaluate import evaluate
from workbench.export import check, export, load

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
TEXT, NUMBERS = ["island", "sex"], ["bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g", "year"]
CUSTOMER_TEXT, CUSTOMER_NUMBERS = ["plan", "region", "channel"], ["age", "spend", "tenure"]


def _text_then_numbers(text_steps, number_steps, text=TEXT, numbers=NUMBERS):
    return make_column_transformer((make_pipeline(*text_steps), text), (make_pipeline(*number_steps), numbers))


PIPELINES = {  # name: (data, target, pipeline)
    "penguins-onehot-logistic": ("penguins", "species", lambda: make_pipeline(
        _text_then_numbers([SimpleImputer(strategy="most_frequent"), OneHotEncoder(handle_unknown="ignore")], [SimpleImputer(), StandardScaler()]),
        LogisticRegression(max_iter=5000))),
    "penguins-missing-as-category": ("penguins", "species", lambda: make_pipeline(
        _text_then_numbers([OneHotEncoder(handle_unknown="ignore")], [SimpleImputer(), StandardScaler()]), LogisticRegression(max_iter=5000))),
    "penguins-constant-forest": ("penguins", "species", lambda: make_pipeline(
        _text_then_numbers([SimpleImputer(strategy="constant", fill_value="missing"), OneHotEncoder(handle_unknown="ignore")], [SimpleImputer()]),
        RandomForestClassifier(30, random_state=0))),
    "penguins-ordinal-hist-boosting": ("penguins", "species", lambda: make_pipeline(
        make_column_transformer((OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1), TEXT), remainder="passthrough"),
        HistGradientBoostingClassifier(max_iter=30, random_state=0))),
    "penguins-ordinal-forest": ("penguins", "species", lambda: make_pipeline(  # NaN reaches the trees: infinite thresholds
        make_column_transformer((OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1), TEXT), (SimpleImputer(), NUMBERS)),
        RandomForestClassifier(20, random_state=0))),
    "penguins-mass-ridge": ("penguins", "mass", lambda: make_pipeline(
        _text_then_numbers([SimpleImputer(strategy="most_frequent"), OneHotEncoder(handle_unknown="ignore")], [SimpleImputer(), StandardScaler()],
                           numbers=NUMBERS[:3]), Ridge())),
    "penguins-linear-svc": ("penguins", "species", lambda: make_pipeline(
        _text_then_numbers([SimpleImputer(strategy="most_frequent"), OneHotEncoder(handle_unknown="ignore", drop="first")], [SimpleImputer(), StandardScaler()]),
        LinearSVC())),
    "customers-onehot-logistic": ("customers", "churned", lambda: make_pipeline(
        _text_then_numbers([SimpleImputer(strategy="constant", fill_value="none"), OneHotEncoder(handle_unknown="infrequent_if_exist", min_frequency=10)],
                           [SimpleImputer(strategy="median"), StandardScaler()], CUSTOMER_TEXT, CUSTOMER_NUMBERS), LogisticRegression(max_iter=5000))),
    "customers-target-encoder": ("customers", "churned", lambda: make_pipeline(
        _text_then_numbers([SimpleImputer(strategy="most_frequent"), TargetEncoder(random_state=0)], [SimpleImputer()], CUSTOMER_TEXT, CUSTOMER_NUMBERS),
        LogisticRegression(max_iter=5000))),
    "customers-gradient-boosting": ("customers", "churned", lambda: make_pipeline(
        _text_then_numbers([SimpleImputer(strategy="most_frequent"), OneHotEncoder(handle_unknown="ignore")], [SimpleImputer()], CUSTOMER_TEXT, CUSTOMER_NUMBERS),
        GradientBoostingClassifier(n_estimators=30, random_state=0))),
    "customers-ordinal-forest-regressor": ("customers", "spend", lambda: make_pipeline(
        _text_then_numbers([SimpleImputer(strategy="most_frequent"), OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1)],
                           [SimpleImputer()], CUSTOMER_TEXT, ["age", "tenure"]), RandomForestRegressor(30, random_state=0))),
    "penguins-lightgbm-categories": ("penguins-categories", "species", lambda: __import__("lightgbm").LGBMClassifier(n_estimators=30, verbose=-1)),
    "penguins-xgboost-categories": ("penguins-categories", "species-codes", lambda: __import__("xgboost").XGBClassifier(
        n_estimators=30, enable_categorical=True, tree_method="hist")),
}


def _data(name: str, target: str):
    if name.startswith("penguins"):
        X, species, mass = penguins()
        if name == "penguins-categories":
            X = X.astype({c: "category" for c in TEXT})
        y = {"species": species, "species-codes": species.astype("category").cat.codes, "mass": mass}[target]
        return (X.drop(columns="body_mass_g"), y) if target == "mass" else (X, y)
    X, churned = customers()
    return (X.drop(columns="spend"), X["spend"].fillna(0)) if target == "spend" else (X, churned)


def _unseen(X, value="never-seen"):
    "Rows with values the model never saw: text it has no category for (`value`)."
    X = X.head(5).copy()
    for c in X.columns:
        if X[c].dtype.kind not in "biuf" and not hasattr(X[c], "cat"):
            X[c] = value
    return X


def _same(predictor, model, X):
    "Labels equal and probabilities within 1e-5; values within 1e-5 of their scale (ONNX answers float32)."
    got, want = predictor.predict(X), model.predict(X)
    if not hasattr(model, "classes_"):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * np.abs(want).max())
        return
    np.testing.assert_array_equal(got, want)
    if hasattr(model, "predict_proba"):
        np.testing.assert_allclose(predictor.predict_proba(X), model.predict_proba(X), atol=1e-5)


@pytest.mark.parametrize("name", PIPELINES)
def test_pipelines_fitted_on_frames_with_text_answer_as_they_do(name, tmp_path):
    data, target, make = PIPELINES[name]
    X, y = _data(data, target)
    model = make().fit(X, y)
    bundle = export(model, X.head(20), tmp_path / name)
    assert bundle.metadata["named"] and bundle.metadata["frame"] and [s["name"] for s in bundle.metadata["inputs"]] == list(X.columns)
    predictor = load(tmp_path / name)
    _same(predictor, model, X)
    if any(s["dtype"] == "string" and "categories" not in s for s in bundle.metadata["inputs"]):
        _same(predictor, model, _unseen(X))  # text never seen in fitting: answered as the model answers it
        _same(predictor, model, _unseen(X, ""))  # an empty string is a value, not a missing one (as scikit-learn takes it)
    check(tmp_path / name)  # the stored sample still answers as at export (the graph formats; raises where one does not)
    assert set(bundle.files) & {"model.onnx", "model.skops", "model.xgb.json", "model.lgb.txt"}


def test_the_penguins_pipeline_exports_to_onnx_with_a_string_input_per_text_column(tmp_path):
    import onnxruntime as ort

    X, species, _ = penguins()
    model = PIPELINES["penguins-onehot-logistic"][2]().fit(X, species)
    bundle = export(model, X.head(10), tmp_path / "penguins")
    assert "model.onnx" in bundle.files and not bundle.metadata["failed"]
    session = ort.InferenceSession(str(tmp_path / "penguins" / "model.onnx"), providers=["CPUExecutionProvider"])
    assert {i.name: i.type for i in session.get_inputs()}["island"] == "tensor(string)"
    assert [s["nullable"] for s in bundle.metadata["inputs"]] == [True, True, True, True, True, True, False]  # year is an int column
    # what metadata.json says is what ONNX Runtime answers
    assert [(o["name"], o["dtype"]) for o in bundle.metadata["outputs"]] == [("label", "string"), ("probabilities", "float32")]
    predictor = load(tmp_path / "penguins")
    records = X.head(3).astype(object).where(X.head(3).notna(), None).to_dict("records")  # as JSON clients send rows
    np.testing.assert_array_equal(predictor.predict(records), model.predict(X.head(3)))
    assert evaluate(predictor, X, species).metrics["accuracy"] == pytest.approx(evaluate(model, X, species).metrics["accuracy"])


def test_the_metadata_says_what_onnx_runtime_answers(tmp_path):
    from sklearn.datasets import load_iris

    X, y = load_iris(return_X_y=True)
    bundle = export(RandomForestClassifier(10, random_state=0).fit(X, y), X[:8], tmp_path / "forest")
    session_dtypes = {k: v.dtype.name for k, v in load(tmp_path / "forest")._run(X[:2].astype(bundle.metadata["inputs"][0]["dtype"])).items()}
    assert {o["name"]: o["dtype"] for o in bundle.metadata["outputs"]}["probabilities"] == session_dtypes["predict_proba"] == "float32"


@pytest.mark.parametrize("change, message", [
    (lambda X: X.drop(columns="island"), "missing column 'island'"),
    (lambda X: X.assign(colour="red"), "unknown column 'colour'"),
    (lambda X: X.assign(island=3), "column 'island' takes text; row 0 holds 3"),
    (lambda X: X.assign(bill_length_mm="long"), "column 'bill_length_mm' takes numbers; row 0 holds 'long'"),
    (lambda X: X.assign(year=None), "column 'year' is missing in row 0, and this model takes no missing year"),
    (lambda X: X.head(0), "the batch is empty"),
])
def test_a_frame_the_model_cannot_take_is_refused_naming_the_column(change, message, tmp_path):
    X, species, _ = penguins()
    model = PIPELINES["penguins-onehot-logistic"][2]().fit(X, species)
    export(model, X.head(10), tmp_path / "penguins")
    with pytest.raises(InputError, match=message):
        load(tmp_path / "penguins").predict(change(X.head(4)))


def _bert(kind: str):
    from transformers import BertConfig, BertForSequenceClassification, BertForTokenClassification

    torch.manual_seed(0)
    config = BertConfig(vocab_size=120, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                        max_position_embeddings=64, num_labels=3)
    return (BertForTokenClassification if kind == "token" else BertForSequenceClassification)(config).eval()


def _padded_batch(lengths, seed=0):
    "Token ids and their mask for sentences of `lengths`, padded with 0 to the longest, as a tokenizer pads them."
    rng = np.random.default_rng(seed)
    ids = np.zeros((len(lengths), max(lengths)), np.int64)
    mask = np.zeros_like(ids)
    for i, n in enumerate(lengths):
        ids[i, :n], mask[i, :n] = rng.integers(1, 120, n), 1
    return {"input_ids": ids, "attention_mask": mask}


@pytest.mark.parametrize("kind", ["sequence", "token"])
def test_a_bert_with_an_attention_mask_answers_padded_batches_as_the_model(kind, tmp_path):
    model = _bert(kind)
    sample = {k: torch.from_numpy(v) for k, v in _padded_batch([12, 7, 3, 12]).items()}
    bundle = export(model, sample, tmp_path / "bert", dynamic_axes={1: "sequence"}, classes=[0, 1, 2])
    assert [s["name"] for s in bundle.metadata["inputs"]] == ["input_ids", "attention_mask"]
    assert bundle.metadata["padding"] == {"input_ids": 0, "attention_mask": 0} and not bundle.metadata["failed"]
    batch = _padded_batch([20, 9, 2], seed=1)  # longer than the sample, and padded
    with torch.no_grad():
        want = model(**{k: torch.from_numpy(v) for k, v in batch.items()}).logits.numpy()
    for backend in ("onnx", "pt2"):
        np.testing.assert_allclose(load(tmp_path / "bert", backend=backend, trusted=["pt2"]).predict(batch), want, atol=1e-5)
    with pytest.raises(InputError, match="'attention_mask' has sequence 5, but 'input_ids' has 20"):
        load(tmp_path / "bert").predict({"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"][:, :5]})
    with pytest.raises(InputError, match="missing input 'attention_mask'"):
        load(tmp_path / "bert").predict({"input_ids": batch["input_ids"]})


def test_positional_inputs_are_named_after_forward(tmp_path):
    class Towers(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.left, self.right = torch.nn.Linear(3, 2), torch.nn.Linear(4, 2)

        def forward(self, image, extra):
            return self.left(image) + self.right(extra)

    model = Towers().eval()
    bundle = export(model, (torch.randn(5, 3), torch.randn(5, 4)), tmp_path / "towers")
    assert [(s["name"], s["shape"]) for s in bundle.metadata["inputs"]] == [("image", ["batch", 3]), ("extra", ["batch", 4])]
    a, b = np.random.default_rng(0).normal(size=(2, 3)).astype(np.float32), np.random.default_rng(1).normal(size=(2, 4)).astype(np.float32)
    with torch.no_grad():
        want = model(torch.from_numpy(a), torch.from_numpy(b)).numpy()
    for backend in ("onnx", "pt2"):
        np.testing.assert_allclose(load(tmp_path / "towers", backend=backend, trusted=["pt2"]).predict((a, b)), want, atol=1e-6)
    np.testing.assert_allclose(load(tmp_path / "towers", backend="torch", model=Towers()).predict({"image": a, "extra": b}).shape, (2, 2))

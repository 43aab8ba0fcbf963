"""XGBoost and LightGBM through the same doors as scikit-learn: fit, export (ONNX and their own files), load, serve, evaluate."""
import os
import signal

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_breast_cancer, load_diabetes, load_iris, load_wine
from sklearn.pipeline import make_pipeline
from sklearn.impute import SimpleImputer

from conftest import assert_same_answers
from workbench.core import InputError
from workbench.estimators import fit_estimator
from workbench.evaluate import evaluate
from workbench.export import ExportError, check, export, load
from workbench.run import run_notebook
from workbench.store import RunStore

xgboost = pytest.importorskip("xgboost")
lightgbm = pytest.importorskip("lightgbm")

MODELS = {
    "xgb-binary": (lambda: xgboost.XGBClassifier(n_estimators=30), load_breast_cancer, "xgboost"),
    "xgb-multiclass": (lambda: xgboost.XGBClassifier(n_estimators=30), load_wine, "xgboost"),
    "xgb-regressor": (lambda: xgboost.XGBRegressor(n_estimators=30), load_diabetes, "xgboost"),
    "lgbm-binary": (lambda: lightgbm.LGBMClassifier(n_estimators=30, verbose=-1), load_breast_cancer, "lightgbm"),
    "lgbm-multiclass": (lambda: lightgbm.LGBMClassifier(n_estimators=30, verbose=-1), load_iris, "lightgbm"),
    "lgbm-regressor": (lambda: lightgbm.LGBMRegressor(n_estimators=30, verbose=-1), load_diabetes, "lightgbm"),
    "imputer-xgb-pipeline": (lambda: make_pipeline(SimpleImputer(), xgboost.XGBClassifier(n_estimators=20)), load_iris, "skops"),
}


def _split(loader, frame=False):
    X, y = loader(return_X_y=True, as_frame=frame)
    X = X.astype(np.float32)
    return X[30:], y[30:], X[:30]


def _exported(make, loader, path):
    "A model from `make` fitted on the data of `loader`, its bundle at `path`, and rows it has not seen."
    X, y, X_new = _split(loader)
    model = make().fit(X, y)
    return model, export(model, X[:16], path), X_new


@pytest.mark.parametrize("name", MODELS)
def test_every_file_of_the_bundle_answers_as_the_model(name, tmp_path):
    make, loader, native = MODELS[name]
    model, bundle, X_new = _exported(make, loader, tmp_path / name)
    assert set(f["format"] for f in bundle.files.values()) == {"onnx", native}, bundle
    want = model.predict(X_new)
    for backend in ("onnx", native):
        trusted = ["xgboost.core.Booster", "xgboost.sklearn.XGBClassifier", "numpy.dtype"]  # scikit-learn's own need no naming
        assert_same_answers(load(tmp_path / name, backend=backend, trusted=trusted).predict(X_new), want)
    if hasattr(model, "predict_proba"):
        np.testing.assert_allclose(load(tmp_path / name).predict_proba(X_new), model.predict_proba(X_new), atol=1e-5)
    assert set(check(tmp_path / name)) == {"onnx"}
    result = evaluate(tmp_path / name, X_new, loader(return_X_y=True)[1][:30], resamples=100)  # evaluated from the bundle
    assert result.task == ("regression" if "regressor" in name else "classification")


def test_lightgbm_with_text_labels_and_a_frame(tmp_path):
    X, y = load_breast_cancer(return_X_y=True, as_frame=True)
    labels = np.where(y == 1, "benign", "malignant")
    model = lightgbm.LGBMClassifier(n_estimators=20, verbose=-1).fit(X.astype("float32"), labels)
    export(model, X.astype("float32").to_numpy()[:16], tmp_path / "b")  # a sample without the frame's names
    predictor = load(tmp_path / "b")
    assert list(predictor.predict(X.to_numpy("float32")[:5])) == list(model.predict(X.astype("float32")[:5]))
    assert predictor.metadata["features"][:2] == ["mean_radius", "mean_texture"]  # LightGBM's own names for the columns


def test_missing_values_reach_the_trees(tmp_path):
    X, y, X_new = _split(load_breast_cancer)
    X, X_new = X.copy(), X_new.copy()
    X[::4, 0], X_new[::3, 0] = np.nan, np.nan
    for make in (lambda: xgboost.XGBClassifier(n_estimators=20), lambda: lightgbm.LGBMClassifier(n_estimators=20, verbose=-1)):
        model = make().fit(X, y)
        bundle = export(model, X[:16], tmp_path / type(model).__name__)
        assert bundle.metadata["allow_nan"] is True  # the server will pass NaN through to it
        np.testing.assert_array_equal(load(bundle.path).predict(X_new), model.predict(X_new))


def test_early_stopping_and_the_curve_per_round():
    X, y = load_breast_cancer(return_X_y=True)
    for model, column in ((xgboost.XGBClassifier(n_estimators=400, learning_rate=0.5), "valid_logloss"),
                          (lightgbm.LGBMClassifier(n_estimators=400, learning_rate=0.5, verbose=-1), "valid_binary_logloss")):
        result = fit_estimator(model, X, y, patience=5)
        assert len(result.history) < 400 and result.history[column].notna().all() and result.metrics["accuracy"] > 0.9


def test_category_columns_export_and_what_cannot_is_said(tmp_path):
    X, y = load_breast_cancer(return_X_y=True, as_frame=True)
    X = X.astype("float32").assign(site=pd.Categorical(np.where(np.arange(len(X)) % 3, "a", "b")))
    model = lightgbm.LGBMClassifier(n_estimators=10, verbose=-1).fit(X, y)  # LightGBM takes the category itself
    bundle = export(model, X.head(16), tmp_path / "categorical")  # ONNX on the categories' codes, as LightGBM codes them
    assert "model.onnx" in bundle.files and bundle.metadata["inputs"][-1] == {"name": "site", "shape": ["batch", 1], "dtype": "string",
                                                                                "categories": ["a", "b"], "nullable": True}
    np.testing.assert_array_equal(load(tmp_path / "categorical").predict(X), model.predict(X))
    np.testing.assert_allclose(load(tmp_path / "categorical").predict_proba(X), model.predict_proba(X), atol=1e-5)
    coded = X.assign(site=X["site"].cat.codes.astype("float32"))  # or its integer codes, with categorical_feature: one matrix
    model = lightgbm.LGBMClassifier(n_estimators=10, verbose=-1).fit(coded, y, categorical_feature=["site"])
    export(model, coded.head(16), tmp_path / "coded")
    np.testing.assert_array_equal(load(tmp_path / "coded").predict(coded.to_numpy()), model.predict(coded))
    booster = xgboost.train({"objective": "binary:logistic"}, xgboost.DMatrix(X.drop(columns="site"), label=y), num_boost_round=5)
    with pytest.raises(InputError, match="cannot export a Booster"):
        export(booster, X.drop(columns="site").head(16), tmp_path / "booster")
    assert not (tmp_path / "booster").exists()


def test_a_frame_sample_is_matched_to_the_columns_the_model_was_fitted_on(tmp_path):
    X, y = load_breast_cancer(return_X_y=True, as_frame=True)
    X = X.astype("float32")
    for model in (xgboost.XGBClassifier(n_estimators=10), lightgbm.LGBMClassifier(n_estimators=10, verbose=-1)):
        model.fit(X, y)  # XGBoost keeps the names in its DMatrix, LightGBM with underscores for spaces
        name = type(model).__name__
        with pytest.raises(InputError, match="lacks 1 of the 30 columns the model was fitted on: mean.radius"):
            export(model, X.drop(columns="mean radius").head(16), tmp_path / name)
        with pytest.raises(InputError, match="lacks 30 of the 30 columns"):
            export(model, X.head(16).rename(columns=str.upper), tmp_path / name)
        assert not (tmp_path / name).exists()
        export(model, X.head(16)[X.columns[::-1]], tmp_path / name)  # another order: matched by name
        np.testing.assert_array_equal(load(tmp_path / name).predict(X.to_numpy()[:50]), model.predict(X[:50]))


@pytest.mark.parametrize("library", ["xgboost", "lightgbm"])
def test_ctrl_c_stops_boosting_at_the_end_of_a_round(library, capsys, monkeypatch):
    from workbench import estimators
    from workbench.progress import TextProgress

    class PressCtrlCAtRoundFive(TextProgress):  # the live view, with a person pressing Ctrl-C as round 5 shows
        def after_epoch(self, t):
            super().after_epoch(t)
            if t.epoch == 5:
                os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(estimators, "default_progress", PressCtrlCAtRoundFive)
    X, y = load_breast_cancer(return_X_y=True)
    model = (xgboost.XGBClassifier(n_estimators=300, learning_rate=0.3) if library == "xgboost"
             else lightgbm.LGBMClassifier(n_estimators=300, learning_rate=0.3, verbose=-1))
    handler = signal.getsignal(signal.SIGINT)
    result = fit_estimator(model, X, y, patience=300)
    assert result.interrupted and len(result.history) == 5  # no round after the one Ctrl-C came in
    assert signal.getsignal(signal.SIGINT) is handler
    assert "stopped after round 5 (interrupted)" in capsys.readouterr().out
    assert result.metrics["accuracy"] > 0.8  # the model as fitted so far, scored


def test_boosting_rounds_are_recorded_as_they_come(tmp_path):
    from conftest import write_notebook

    nb = write_notebook(
        tmp_path / "boost.ipynb",
        "import xgboost\nfrom sklearn.datasets import load_breast_cancer\nfrom workbench.estimators import fit_estimator\n"
        "X, y = load_breast_cancer(return_X_y=True)\n"
        "result = fit_estimator(xgboost.XGBClassifier(n_estimators=8), X, y)")
    run = run_notebook(nb, out_dir=tmp_path / "out", html=False)
    assert run.ok, run.describe_error()
    assert RunStore().history(run.id, "valid_logloss")["step"].tolist() == list(range(1, 9))
    assert "accuracy" in run.metrics and "round 8/8" in (tmp_path / "out").joinpath("boost.ipynb").read_text()


def test_without_onnxmltools_the_bundle_keeps_the_librarys_file_and_names_the_extra(tmp_path, monkeypatch):
    import sys

    X, y, _ = _split(load_breast_cancer)
    model = xgboost.XGBClassifier(n_estimators=5).fit(X, y)
    monkeypatch.setitem(sys.modules, "onnxmltools", None)  # as where it is not installed
    bundle = export(model, X[:16], tmp_path / "b")
    assert set(bundle.files) == {"model.xgb.json"}
    assert "pip install 'workbench[boosting]'" in bundle.metadata["failed"]["onnx"]


def test_import_workbench_imports_no_optional_library():
    import subprocess
    import sys

    code = ("import sys, workbench, workbench.train, workbench.estimators, workbench.export, workbench.frameworks, workbench.serve\n"
            "print(sorted(m for m in ('keras', 'xgboost', 'lightgbm', 'transformers', 'onnxmltools', 'mlflow') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "[]", out.stderr[-500:]


LEAN = {  # a model, and the frameworks its export and load may import: its own, never the others (torch, jsonschema)
    "logistic": ("from sklearn.linear_model import LogisticRegression as M; model = M(max_iter=3000)", set()),
    "pipeline": ("from sklearn.pipeline import make_pipeline; from sklearn.preprocessing import StandardScaler; "
                 "from sklearn.tree import DecisionTreeClassifier; model = make_pipeline(StandardScaler(), DecisionTreeClassifier())", set()),
    "xgboost": ("import xgboost; model = xgboost.XGBClassifier(n_estimators=5)", {"xgboost"}),
    "lightgbm": ("import lightgbm; model = lightgbm.LGBMClassifier(n_estimators=5, verbose=-1)", {"lightgbm"}),
    "xgboost in a pipeline": ("import xgboost; from sklearn.pipeline import make_pipeline; from sklearn.impute import SimpleImputer; "
                              "model = make_pipeline(SimpleImputer(), xgboost.XGBClassifier(n_estimators=5))", {"xgboost"}),
}


@pytest.mark.parametrize("name", LEAN)
def test_an_export_loads_no_framework_its_model_does_not_use(name, tmp_path):
    "In a fresh process: fit, export to ONNX, load and predict; the answers are the model's, and no other framework was imported."
    import subprocess
    import sys

    make, own = LEAN[name]
    code = (f"import sys, numpy as np\nfrom sklearn.datasets import load_breast_cancer\n{make}\n"
            "X, y = load_breast_cancer(return_X_y=True)\nmodel.fit(X, y)\nfrom workbench.export import export, load\n"
            f"export(model, X[:16], {str(tmp_path / 'b')!r}, formats=['onnx'])\n"
            f"answers = load({str(tmp_path / 'b')!r}).predict(X)\n"
            "assert (np.asarray(answers) == model.predict(X)).mean() > 0.99\n"
            "print(sorted(m for m in ('torch', 'xgboost', 'lightgbm', 'keras', 'jsonschema', 'workbench.train') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-1500:]
    assert out.stdout.strip() == str(sorted(own)), out.stdout


VARIANTS = {  # name: (estimator, data, whether ONNX can hold it: where not, the bundle says why and keeps the library's file)
    "xgb-random-forest-classifier": (lambda: xgboost.XGBRFClassifier(n_estimators=10), load_breast_cancer, True),
    "xgb-random-forest-regressor": (lambda: xgboost.XGBRFRegressor(n_estimators=10), load_diabetes, True),
    "xgb-poisson": (lambda: xgboost.XGBRegressor(n_estimators=10, objective="count:poisson"), load_diabetes, True),
    "xgb-absolute-error": (lambda: xgboost.XGBRegressor(n_estimators=10, objective="reg:absoluteerror"), load_diabetes, True),
    "xgb-lossguide": (lambda: xgboost.XGBClassifier(n_estimators=10, max_depth=0, grow_policy="lossguide", max_leaves=8), load_breast_cancer, True),
    "xgb-dart": (lambda: xgboost.XGBClassifier(n_estimators=10, booster="dart"), load_breast_cancer, False),
    "xgb-gblinear": (lambda: xgboost.XGBClassifier(n_estimators=10, booster="gblinear"), load_breast_cancer, False),
    "xgb-softmax": (lambda: xgboost.XGBClassifier(n_estimators=10, objective="multi:softmax"), load_wine, False),
    "lgbm-dart": (lambda: lightgbm.LGBMClassifier(n_estimators=10, boosting_type="dart", verbose=-1), load_breast_cancer, True),
    "lgbm-poisson": (lambda: lightgbm.LGBMRegressor(n_estimators=10, objective="poisson", verbose=-1), load_diabetes, True),
    "lgbm-quantile": (lambda: lightgbm.LGBMRegressor(n_estimators=10, objective="quantile", alpha=0.9, verbose=-1), load_diabetes, True),
    "lgbm-balanced": (lambda: lightgbm.LGBMClassifier(n_estimators=10, class_weight="balanced", verbose=-1), load_wine, True),
    "lgbm-random-forest": (lambda: lightgbm.LGBMClassifier(n_estimators=10, boosting_type="rf", bagging_freq=1, bagging_fraction=0.8,
                                                           verbose=-1), load_breast_cancer, False),
    "lgbm-linear-tree": (lambda: lightgbm.LGBMRegressor(n_estimators=10, linear_tree=True, verbose=-1), load_diabetes, False),
}


@pytest.mark.parametrize("name", VARIANTS)
def test_variants_of_the_libraries_export_what_answers_as_they_do(name, tmp_path):
    make, loader, onnx = VARIANTS[name]
    model, bundle, X_new = _exported(make, loader, tmp_path / name)
    assert ("model.onnx" in bundle.files) is onnx, bundle.metadata["failed"]
    if not onnx:  # the reason, from the converter or from the parity check
        assert bundle.metadata["failed"]["onnx"]
    assert_same_answers(load(tmp_path / name).predict(X_new), model.predict(X_new))  # ONNX where it holds, else the library's file

"""Every estimator family skl2onnx converts exports, reloads and answers as the estimator does.

Classifiers: the bundle's `predict` equals `estimator.predict` exactly (labels, from the graph's label output) and
`predict_proba` agrees within tolerance; regressors: values in the estimator's own shape, within tolerance. Each
estimator is fitted on data that ships with scikit-learn and checked on rows it was not fitted on.
"""
import numpy as np
import pytest
from sklearn import ensemble, linear_model, naive_bayes, neighbors, neural_network, svm, tree
from sklearn.compose import ColumnTransformer
from sklearn.datasets import load_breast_cancer, load_diabetes, load_iris, load_wine
from sklearn.decomposition import PCA
from sklearn.impute import SimpleImputer
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import MinMaxScaler, OneHotEncoder, PolynomialFeatures, StandardScaler

from conftest import assert_same_answers
from workbench.core import InputError
from workbench.export import ExportError, check, export, load

pytestmark = [pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning"),  # small models, fitted fast
              pytest.mark.filterwarnings("ignore::scipy.linalg.LinAlgWarning")]

CLASSIFIERS = {
    "logistic": linear_model.LogisticRegression(max_iter=2000),
    "sgd": make_pipeline(StandardScaler(), linear_model.SGDClassifier(random_state=0)),
    "ridge-classifier": linear_model.RidgeClassifier(),
    "perceptron": make_pipeline(StandardScaler(), linear_model.Perceptron(random_state=0)),
    "decision-tree": tree.DecisionTreeClassifier(random_state=0),
    "random-forest": ensemble.RandomForestClassifier(30, random_state=0),
    "extra-trees": ensemble.ExtraTreesClassifier(30, random_state=0),
    "gradient-boosting": ensemble.GradientBoostingClassifier(n_estimators=30, random_state=0),
    "hist-gradient-boosting": ensemble.HistGradientBoostingClassifier(max_iter=30, random_state=0),
    "adaboost": ensemble.AdaBoostClassifier(random_state=0),
    "bagging": ensemble.BaggingClassifier(random_state=0),
    "svc": make_pipeline(StandardScaler(), svm.SVC()),
    "svc-probability": make_pipeline(StandardScaler(), svm.SVC(probability=True, random_state=0)),
    "linear-svc": make_pipeline(StandardScaler(), svm.LinearSVC()),
    "k-neighbours": make_pipeline(StandardScaler(), neighbors.KNeighborsClassifier()),
    "gaussian-nb": naive_bayes.GaussianNB(),
    "multinomial-nb": naive_bayes.MultinomialNB(),
    "mlp": make_pipeline(StandardScaler(), neural_network.MLPClassifier(hidden_layer_sizes=(32,), max_iter=500, random_state=0)),
    "scaler-pca-logistic": make_pipeline(StandardScaler(), PCA(5), linear_model.LogisticRegression(max_iter=1000)),
    "one-hot-column-transformer": make_pipeline(
        ColumnTransformer([("codes", OneHotEncoder(handle_unknown="ignore"), [0]), ("rest", StandardScaler(), list(range(1, 13)))]),
        linear_model.LogisticRegression(max_iter=1000)),
}
REGRESSORS = {
    "linear": linear_model.LinearRegression(),
    "ridge": linear_model.Ridge(),
    "lasso": linear_model.Lasso(alpha=0.1),
    "elastic-net": linear_model.ElasticNet(alpha=0.01),
    "bayesian-ridge": linear_model.BayesianRidge(),
    "huber": make_pipeline(StandardScaler(), linear_model.HuberRegressor(max_iter=1000)),
    "decision-tree": tree.DecisionTreeRegressor(max_depth=6, random_state=0),
    "random-forest": ensemble.RandomForestRegressor(30, random_state=0),
    "extra-trees": ensemble.ExtraTreesRegressor(30, random_state=0),
    "gradient-boosting": ensemble.GradientBoostingRegressor(n_estimators=30, random_state=0),
    "hist-gradient-boosting": ensemble.HistGradientBoostingRegressor(max_iter=30, random_state=0),
    "svr": make_pipeline(StandardScaler(), svm.SVR()),
    "linear-svr": make_pipeline(StandardScaler(), svm.LinearSVR(random_state=0, max_iter=5000)),
    "k-neighbours": neighbors.KNeighborsRegressor(),
    "mlp": make_pipeline(StandardScaler(), neural_network.MLPRegressor(hidden_layer_sizes=(32,), max_iter=1000, random_state=0)),
    "minmax-polynomial-ridge": make_pipeline(MinMaxScaler(), PolynomialFeatures(2), linear_model.Ridge()),
    "imputer-ridge": make_pipeline(SimpleImputer(), linear_model.Ridge()),
}


def _skops_types(bundle):
    import skops.io as sio

    types = sio.get_untrusted_types(file=bundle / "model.skops")
    assert all(t.startswith("sklearn.") for t in types), types
    return types


def _split(X, y):
    order = np.random.default_rng(0).permutation(len(X))
    X, y = X[order].astype(np.float32), y[order]
    return X[40:], y[40:], X[:40], y[:40]


def _classification(name):
    if name == "one-hot-column-transformer":  # a small-integer code in column 0, as an encoded category would be
        X, y = load_wine(return_X_y=True)
        X[:, 0] = np.round(X[:, 0]) % 4
        return _split(X, y)
    X, y = (load_iris if name in ("multinomial-nb", "gaussian-nb") else load_breast_cancer)(return_X_y=True)
    return _split(X, y)


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_classifier_bundle_answers_as_the_estimator(name, tmp_path):
    X, y, X_new, _ = _classification(name)
    est = CLASSIFIERS[name].fit(X, y)
    bundle = export(est, X[:16], tmp_path / name)
    assert set(bundle.files) == {"model.onnx", "model.skops"}, bundle
    predictor = load(tmp_path / name)
    assert predictor.backend == "onnx"
    np.testing.assert_array_equal(predictor.predict(X_new), est.predict(X_new))
    if hasattr(est, "predict_proba"):
        np.testing.assert_allclose(predictor.predict_proba(X_new), est.predict_proba(X_new), atol=1e-4)
    else:
        with pytest.raises(InputError, match="has no predict_proba"):
            predictor.predict_proba(X_new)
    types = _skops_types(tmp_path / name)  # skops trusts most of scikit-learn; trees' Cython class must be named
    skops = load(tmp_path / name, backend="skops", trusted=types)
    np.testing.assert_array_equal(skops.predict(X_new), est.predict(X_new))
    assert set(check(tmp_path / name)) == {"onnx"}


@pytest.mark.parametrize("name", REGRESSORS)
def test_regressor_bundle_answers_as_the_estimator(name, tmp_path):
    X, y = load_diabetes(return_X_y=True)
    if name == "imputer-ridge":
        X = X.copy()
        X[::7, 2] = np.nan
    X, y, X_new, _ = _split(X, y)
    est = REGRESSORS[name].fit(X, y)
    bundle = export(est, X[:16], tmp_path / name)
    assert set(bundle.files) == {"model.onnx", "model.skops"}, bundle
    got, want = load(tmp_path / name).predict(X_new), est.predict(X_new)
    assert got.shape == want.shape == (len(X_new),)
    np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-3 * np.abs(want).max())
    with pytest.raises(InputError, match="needs a classifier"):
        load(tmp_path / name).predict_proba(X_new)


def test_string_labels_come_back_as_strings(tmp_path):
    X, y, X_new, _ = _classification("logistic")
    names = np.array(["benign", "malignant"])[y]
    est = linear_model.LogisticRegression(max_iter=2000).fit(X, names)
    export(est, X[:8], tmp_path / "b")
    assert list(load(tmp_path / "b").predict(X_new[:5])) == list(est.predict(X_new[:5]))
    assert set(check(tmp_path / "b")) == {"onnx"}


def test_hist_gradient_boosting_takes_missing_values(tmp_path):
    X, y, X_new, _ = _classification("hist-gradient-boosting")
    X, X_new = X.copy(), X_new.copy()
    X[::5, 3], X_new[::3, 3] = np.nan, np.nan
    est = ensemble.HistGradientBoostingClassifier(max_iter=20, random_state=0).fit(X, y)
    export(est, X[:16], tmp_path / "b")
    np.testing.assert_array_equal(load(tmp_path / "b").predict(X_new), est.predict(X_new))


def test_an_estimator_skl2onnx_cannot_convert_keeps_its_skops_file(tmp_path):
    from sklearn.kernel_ridge import KernelRidge

    X, y = load_diabetes(return_X_y=True)
    est = KernelRidge().fit(X, y)
    bundle = export(est, X[:8], tmp_path / "b")
    assert set(bundle.files) == {"model.skops"} and "onnx could not be exported" in bundle.metadata["failed"]["onnx"]
    assert "not written: onnx could not be exported" in repr(bundle)
    assert "## Not exported" in (tmp_path / "b" / "MODEL_CARD.md").read_text()
    np.testing.assert_allclose(load(tmp_path / "b").predict(X[:5]), est.predict(X[:5]), rtol=1e-4)  # skops by default
    with pytest.raises(ExportError, match="onnx could not be exported"):  # asked for ONNX: no quiet fallback
        export(est, X[:8], tmp_path / "c", formats=["onnx", "skops"])


def test_text_where_the_model_took_numbers_is_refused_with_its_reason(tmp_path):
    X, y = load_iris(return_X_y=True, as_frame=True)
    est = linear_model.LogisticRegression(max_iter=500).fit(X, y)
    with pytest.raises(InputError, match=r"cannot run on the sample of 5 rows of sepal length \(cm\), .*could not convert string to float: 'red'"):
        export(est, X.assign(**{"sepal length (cm)": "red"}).head(), tmp_path / "b")  # text in a column it was fitted on
    assert not (tmp_path / "b").exists()
    export(est, X.assign(colour="red").head(), tmp_path / "b")  # a column it never saw is left out
    assert load(tmp_path / "b").metadata["features"] == list(X.columns)


@pytest.mark.parametrize("name", ["logistic", "svc-probability", "k-neighbours", "mlp", "random-forest", "gradient-boosting"])
def test_float64_data_exports_exactly_or_says_why(name, tmp_path):
    X, y = load_breast_cancer(return_X_y=True)  # float64, as most people's data is
    est = CLASSIFIERS[name].fit(X, y)
    bundle = export(est, X[:64], tmp_path / name)
    if "model.onnx" in bundle.files:
        np.testing.assert_array_equal(load(tmp_path / name).predict(X), est.predict(X))
    else:
        assert "fit on X.astype(np.float32)" in bundle.metadata["failed"]["onnx"], bundle
    assert (load(tmp_path / name, backend="skops", trusted=_skops_types(tmp_path / name)).predict(X) == est.predict(X)).all()


def _every_estimator() -> dict:
    "scikit-learn's own list of its classifiers and regressors, less those that need other estimators or other targets."
    from sklearn.utils import all_estimators

    needs_more = {"ClassifierChain", "MultiOutputClassifier", "MultiOutputRegressor", "RegressorChain", "OneVsOneClassifier",
                  "OneVsRestClassifier", "OutputCodeClassifier", "StackingClassifier", "StackingRegressor", "VotingClassifier",
                  "VotingRegressor", "SelfTrainingClassifier", "FixedThresholdClassifier", "TunedThresholdClassifierCV",
                  "TransformedTargetRegressor", "CalibratedClassifierCV", "FrozenEstimator",
                  "IsotonicRegression", "RadiusNeighborsClassifier",  # one feature; a radius that fits the data
                  "CCA", "PLSCanonical", "MultiTaskElasticNet", "MultiTaskElasticNetCV", "MultiTaskLasso", "MultiTaskLassoCV"}
    return {f"{kind}:{name}": cls for kind in ("classifier", "regressor") for name, cls in all_estimators(type_filter=kind)
            if name not in needs_more}


@pytest.mark.parametrize("name", sorted(_every_estimator()))
def test_every_scikit_learn_estimator_exports_and_answers_as_it_does(name, tmp_path):
    from sklearn.datasets import load_diabetes

    X, y = (load_iris if name.startswith("classifier") else load_diabetes)(return_X_y=True)
    X = X.astype(np.float32)
    est = _every_estimator()[name]().fit(X, y)
    bundle = export(est, X[:16], tmp_path / "b")  # ONNX where skl2onnx converts it, else its skops file alone
    assert "model.skops" in bundle.files and ("model.onnx" in bundle.files or bundle.metadata["failed"]["onnx"])
    assert_same_answers(load(tmp_path / "b").predict(X[:40]), est.predict(X[:40]), rtol=1e-3)  # no trusted= for scikit-learn's types

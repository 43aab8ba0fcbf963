"""`evaluate` against scikit-learn's and fairlearn's own numbers, on many real models and awkward data.

Every classifier and regressor here is fitted on data that ships with scikit-learn and evaluated on rows it did not
see; the metrics must equal scikit-learn's functions called directly, the group gaps fairlearn's, and the bootstrap
intervals must cover the truth as often as they say.
"""
import numpy as np
import pandas as pd
import pytest
import torch
from fairlearn.metrics import demographic_parity_difference, demographic_parity_ratio, equalized_odds_difference
from sklearn import ensemble, linear_model, naive_bayes, neighbors, neural_network, svm, tree
from sklearn import metrics as skm
from sklearn.datasets import load_breast_cancer, load_diabetes, load_iris, load_wine
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from torch import nn

from conftest import write_notebook
from workbench.core import InputError
from workbench.evaluate import evaluate
from workbench.export import export

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

CLASSIFIERS = {
    "logistic": (linear_model.LogisticRegression(max_iter=5000), load_breast_cancer),
    "random-forest": (ensemble.RandomForestClassifier(50, random_state=0), load_breast_cancer),
    "hist-gradient-boosting": (ensemble.HistGradientBoostingClassifier(max_iter=30, random_state=0), load_wine),
    "decision-tree": (tree.DecisionTreeClassifier(max_depth=3, random_state=0), load_iris),
    "svc-no-probabilities": (make_pipeline(StandardScaler(), svm.SVC()), load_wine),
    "k-neighbours": (make_pipeline(StandardScaler(), neighbors.KNeighborsClassifier()), load_iris),
    "gaussian-nb": (naive_bayes.GaussianNB(), load_wine),
    "mlp": (make_pipeline(StandardScaler(), neural_network.MLPClassifier((16,), max_iter=300, random_state=0)), load_iris),
    "xgboost": (__import__("xgboost").XGBClassifier(n_estimators=30), load_wine),
    "lightgbm": (__import__("lightgbm").LGBMClassifier(n_estimators=30, verbose=-1), load_breast_cancer),
}
REGRESSORS = {
    "ridge": linear_model.Ridge(),
    "random-forest": ensemble.RandomForestRegressor(30, random_state=0),
    "gradient-boosting": ensemble.GradientBoostingRegressor(n_estimators=30, random_state=0),
    "k-neighbours": neighbors.KNeighborsRegressor(),
    "svr": make_pipeline(StandardScaler(), svm.SVR()),
}


def _split(loader, as_frame=True):
    X, y = loader(return_X_y=True, as_frame=as_frame)
    return train_test_split(X, y, test_size=0.35, random_state=0)


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_classifiers_agree_with_scikit_learn(name):
    model, loader = CLASSIFIERS[name]
    X_train, X_test, y_train, y_test = _split(loader)
    model.fit(X_train, y_train)
    result = evaluate(model, X_test, y_test, resamples=200)
    pred = model.predict(X_test)
    assert result.metrics["accuracy"] == skm.accuracy_score(y_test, pred)
    assert abs(result.metrics["balanced_accuracy"] - skm.balanced_accuracy_score(y_test, pred)) < 1e-12
    assert abs(result.metrics["macro_f1"] - skm.f1_score(y_test, pred, average="macro")) < 1e-12
    assert abs(result.metrics["weighted_precision"] - skm.precision_score(y_test, pred, average="weighted", zero_division=0)) < 1e-12
    if hasattr(model, "predict_proba"):
        proba = model.predict_proba(X_test)
        expected = skm.roc_auc_score(y_test, proba[:, 1]) if proba.shape[1] == 2 else skm.roc_auc_score(y_test, proba, multi_class="ovr")
        assert abs(result.metrics["roc_auc"] - expected) < 1e-12
        assert abs(result.metrics["log_loss"] - skm.log_loss(y_test, proba)) < 1e-12
        assert 0 <= result.metrics["ece"] <= 1 and result.calibration["rows"].sum() == len(y_test)
    else:
        assert "roc_auc" not in result.metrics and result.calibration is None
    for metric, (low, high) in result.intervals.items():
        assert low <= result.metrics[metric] + 1e-9 and result.metrics[metric] - 1e-9 <= high, metric
    assert result.per_class["support"].sum() == len(y_test) and result.per_class["predicted"].sum() == len(y_test)
    mistakes = int((pred != np.asarray(y_test)).sum())
    assert len(result.worst) == (20 if hasattr(model, "predict_proba") else min(20, mistakes)) and "<h3>worst predictions</h3>" in result.to_html()


@pytest.mark.parametrize("name", REGRESSORS)
def test_regressors_agree_with_scikit_learn(name):
    X_train, X_test, y_train, y_test = _split(load_diabetes)
    model = REGRESSORS[name].fit(X_train, y_train)
    result = evaluate(model, X_test, y_test, resamples=200)
    pred = model.predict(X_test)
    assert result.task == "regression"
    assert abs(result.metrics["mae"] - skm.mean_absolute_error(y_test, pred)) < 1e-9
    assert abs(result.metrics["rmse"] - skm.root_mean_squared_error(y_test, pred)) < 1e-9
    assert abs(result.metrics["r2"] - skm.r2_score(y_test, pred)) < 1e-12
    assert result.metrics["residual_q50"] == pytest.approx(np.median(y_test - pred))
    assert all(low < result.metrics[m] < high for m, (low, high) in result.intervals.items())
    assert result.worst["error"].abs().is_monotonic_decreasing


def test_a_bundle_a_torch_model_and_predictions_give_the_same_evaluation(tmp_path):
    X_train, X_test, y_train, y_test = _split(load_iris, as_frame=False)
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 3)).eval()
    X32 = X_test.astype(np.float32)
    export(net, torch.from_numpy(X32[:8]), tmp_path / "net", classes=[0, 1, 2], formats=["onnx"])
    logits = net(torch.from_numpy(X32)).detach().numpy()
    proba = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    results = [evaluate(net, X32, y_test), evaluate(tmp_path / "net", X32, y_test), evaluate(y=y_test, y_pred=proba.argmax(1), y_proba=proba)]
    for result in results[1:]:
        assert result.metrics["accuracy"] == results[0].metrics["accuracy"]
        assert abs(result.metrics["log_loss"] - results[0].metrics["log_loss"]) < 1e-5
    assert results[1].name == "net"


def _biased(n=20_000, seed=0):
    "Binary data with known group gaps: group b is selected half as often, and its positives are missed more."
    rng = np.random.default_rng(seed)
    groups = pd.DataFrame({"sex": rng.choice(["f", "m"], n), "age": rng.choice(["<40", "40+"], n, p=[0.7, 0.3])})
    y = rng.random(n) < 0.4
    chance = np.where(groups["sex"] == "f", np.where(y, 0.8, 0.3), np.where(y, 0.5, 0.15))
    return groups, y.astype(int), (rng.random(n) < chance).astype(int)


def test_group_gaps_match_hand_and_fairlearn():
    groups, y, pred = _biased()
    result = evaluate(y=y, y_pred=pred, groups=groups[["sex"]], resamples=0)
    gaps, sex = result.groups.gaps, groups["sex"].to_numpy()
    rates = {g: pred[sex == g].mean() for g in ("f", "m")}
    tpr = {g: pred[(sex == g) & (y == 1)].mean() for g in ("f", "m")}
    assert gaps["demographic_parity_difference"] == pytest.approx(abs(rates["f"] - rates["m"]), abs=1e-12)
    assert gaps["demographic_parity_ratio"] == pytest.approx(min(rates.values()) / max(rates.values()), abs=1e-12)
    assert gaps["equal_opportunity_difference"] == pytest.approx(abs(tpr["f"] - tpr["m"]), abs=1e-12)
    assert gaps["demographic_parity_difference"] == pytest.approx(demographic_parity_difference(y, pred, sensitive_features=sex), abs=1e-12)
    assert gaps["demographic_parity_ratio"] == pytest.approx(demographic_parity_ratio(y, pred, sensitive_features=sex), abs=1e-12)
    assert gaps["equalized_odds_difference"] == pytest.approx(equalized_odds_difference(y, pred, sensitive_features=sex), abs=1e-12)
    assert not result.groups.checks.set_index("gap")["ok"]["demographic_parity_ratio"]  # 0.3/0.5-ish: fails the four-fifths rule
    both = evaluate(y=y, y_pred=pred, groups=groups, resamples=0)  # the intersection: four groups
    assert len(both.groups.table) == 4 and both.groups.table["rows"].sum() == len(y)
    inter = groups["sex"] + "/" + groups["age"]
    assert both.groups.gaps["demographic_parity_difference"] == pytest.approx(demographic_parity_difference(y, pred, sensitive_features=inter), abs=1e-12)
    fair = evaluate(y=y, y_pred=pred, groups=groups[["age"]], resamples=0)  # age was not used: within the rules
    assert fair.groups.verdict == "within the rules across groups"


def test_intervals_cover_the_truth_as_often_as_they_say():
    "A classifier right with probability 0.8: over 100 test sets of 500 rows, the 95% interval of accuracy holds 0.8 about 95 times."
    rng = np.random.default_rng(0)
    covered = 0
    for i in range(100):
        y = rng.integers(0, 3, 500)
        pred = np.where(rng.random(500) < 0.8, y, (y + 1) % 3)
        low, high = evaluate(y=y, y_pred=pred, resamples=400, seed=i).intervals["accuracy"]
        covered += low <= 0.8 <= high
    assert 88 <= covered <= 100, covered


@pytest.mark.parametrize("kwargs, message", [
    (dict(y=[0, 1, 1], y_pred=[0, 1]), "y has 3 rows but the predictions 2"),
    (dict(y=[0, 1], y_pred=[0, 1], y_proba=[[0.9, 0.9], [0.2, 0.8]]), "do not sum to one"),
    (dict(y=[0, 1], y_pred=[0, np.nan]), "1 of 2 rows of predictions are NaN"),
    (dict(y=[0, np.nan], y_pred=[0, 1]), "1 of 2 rows of y are NaN"),
    (dict(y=np.linspace(0, 10, 300), y_pred=np.linspace(0, 10, 300), task="classification"), "not classes"),
    (dict(y=[0, 1], y_pred=[0, 1], task="ranking"), "task is 'classification' or 'regression'"),
    (dict(y=[0, 1], y_pred=[0, 1], groups=np.array(["a"])), "groups has 1 rows, the predictions 2"),
    (dict(y=[0, 1], y_pred=[0, 1], groups=["sex"]), "name columns, but the features are not a frame"),
])
def test_bad_input_is_a_clear_error(kwargs, message):
    with pytest.raises(InputError, match=message):
        evaluate(**kwargs)


def test_a_regressor_passed_as_a_classifier_is_refused():
    X, y = load_diabetes(return_X_y=True)
    with pytest.raises(InputError, match="is a regressor"):
        evaluate(linear_model.Ridge().fit(X, y), X, y, task="classification")


def test_awkward_data_is_a_note_not_a_crash():
    y = np.array(["cat", "dog", "bird", "dog", "cat", "bird"] * 10)
    pred = np.where(y == "bird", "dog", y)  # bird is never predicted
    groups = pd.Series(["a"] * 59 + [None], name="site")  # one row without a site, one group of a single row
    result = evaluate(y=y, y_pred=pred, groups=groups, min_group=5, resamples=100)
    assert any("['bird'] are in y but never predicted" in n for n in result.notes)
    assert any("1 rows have no value" in n for n in result.groups.notes) and any("too small to judge: (missing)" in n for n in result.groups.notes)
    assert result.per_class.set_index("class")["precision"]["bird"] == 0
    unseen = evaluate(y=[0, 1, 2, 2], y_pred=[0, 1, 1, 1], y_proba=[[0.8, 0.2], [0.1, 0.9], [0.4, 0.6], [0.3, 0.7]])
    assert any("[2] are in y but not classes of the model" in n for n in unseen.notes)


def test_recorded_values_reach_the_run_and_a_pipeline_can_read_them(tmp_path):
    from workbench.run import run_notebook

    nb = write_notebook(tmp_path / "judge.ipynb",
                        "import numpy as np\nfrom workbench.evaluate import evaluate\n"
                        "rng = np.random.default_rng(0)\ny = rng.integers(0, 2, 400)\npred = np.where(rng.random(400) < 0.9, y, 1 - y)\n"
                        "groups = np.where(rng.random(400) < 0.5, 'a', 'b')\n"
                        "evaluate(y=y, y_pred=pred, groups=groups, resamples=100).record()")
    run = run_notebook(nb, out_dir=tmp_path / "out", html=False)
    assert run.status == "ok", run.error
    assert {"accuracy", "accuracy_low", "accuracy_high", "demographic_parity_difference", "fair"} <= set(run.metrics)
    assert 0.85 < run.metrics["accuracy"] < 0.95 and isinstance(run.metrics["fair"], bool)


def test_a_trainer_is_evaluated_through_its_model():
    from workbench.train import Trainer, synth_classification, synth_mlp

    train_dl, valid_dl = synth_classification(n=1024, seed=0)
    trainer = Trainer(synth_mlp(seed=0), train_dl, valid_dl, metrics=["accuracy"], seed=0, progress=False)
    trainer.fit(2)
    X, y = valid_dl.dataset.tensors
    result = evaluate(trainer, X, y)
    assert result.task == "classification" and result.name == "Trainer"
    assert abs(result.metrics["accuracy"] - trainer.last_metrics()["accuracy"]) < 1e-6  # the Trainer's own validation accuracy

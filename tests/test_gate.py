"""Promotion through a gate, from the command line as a CI job runs it: a paired test against the version an alias
holds, on rows in a file; the decision recorded with its evidence; exit 1 when the alias did not move; rollback.
Bad input: an alias that does not exist, a version whose files changed, too little data, a file without the target
column: each a clear message, and the alias where it was.
"""
import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.tree import DecisionTreeClassifier

from conftest import tamper_kept, workbench
from workbench.export import export
from workbench.gate import decisions
from workbench.registry import model_version, promote, register

pytestmark = pytest.mark.both_stores  # each test on a SQLite store and on a PostgreSQL one


@pytest.fixture
def tumours(tmp_path):
    "Model 'tumours': version 1 a one-split tree (production), version 2 a logistic regression; held-out rows in a parquet file."
    frame = load_breast_cancer(as_frame=True).frame.astype({"target": int})
    order = np.random.default_rng(0).permutation(len(frame))
    fit, held = frame.iloc[order[:300]], frame.iloc[order[300:]]
    X, y = fit.drop(columns="target"), fit["target"]
    register(export(DecisionTreeClassifier(max_depth=1, random_state=0).fit(X, y), X.head(8), tmp_path / "stump").path, name="tumours")
    register(export(make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(X, y), X.head(8), tmp_path / "linear").path,
             name="tumours")
    promote("tumours", 1, "production")
    held.to_parquet(tmp_path / "held.parquet")
    return tmp_path


def test_the_gate_promotes_a_better_version_and_refuses_a_worse_one(tumours):
    data = tumours / "held.parquet"
    out = workbench("models", "promote", "tumours", "2", "production", "--if-better-than", "production", "--on", data)
    assert out.returncode == 0 and out.stdout.startswith("promoted: tumours version 2 to production: better: accuracy +"), out.stderr
    assert model_version("tumours", "production").version == 2
    out = workbench("models", "promote", "tumours", "1", "production", "--if-better-than", "production", "--on", data)
    assert out.returncode == 1 and "not promoted" in out.stdout and "not shown better" in out.stdout
    assert model_version("tumours", "production").version == 2
    recorded = decisions("tumours")
    assert recorded["promoted"].tolist() == [False, True] and recorded["evidence"][1]["test"]["test"] == "mcnemar"
    assert recorded["evidence"][1]["rows"] == 269 and set(recorded["evidence"][1]["metrics"]) == {"challenger", "champion"}
    listed = workbench("models", "decisions", "tumours")
    assert listed.returncode == 0 and "not shown better" in listed.stdout
    back = workbench("models", "rollback", "tumours", "production")
    assert back.returncode == 0 and "models:/tumours/1 (production)" in back.stdout and model_version("tumours", "production").version == 1


def test_a_margin_and_the_fairness_rules(tumours):
    frame = pd.read_parquet(tumours / "held.parquet")
    frame["size"] = np.where(frame["mean radius"] > frame["mean radius"].median(), "large", "small")  # a group the model never saw
    frame.to_parquet(tumours / "grouped.parquet")
    out = workbench("models", "promote", "tumours", "2", "production", "--if-better-than", "production", "--on", tumours / "grouped.parquet",
                    "--fair", "size", "--not-worse", "0.05")
    # better, and within the margin, but malignant tumours are larger: the rate of positive answers differs by size
    assert out.returncode == 1 and "not worse by more than 0.05" in out.stdout and "but unequal across groups: demographic_parity" in out.stdout
    assert model_version("tumours", "production").version == 1
    checks = decisions("tumours")["evidence"][0]["fairness"]["checks"]  # the rules it was held to, with their values
    assert {c["gap"] for c in checks if not c["ok"]} >= {"demographic_parity_ratio"}


@pytest.mark.parametrize("args, code, message", [
    (["--if-better-than", "champion"], 2, "has no version 'champion'"),
    (["--if-better-than", "production", "--min-rows", "1000"], 1, "too little data: 269 rows, and the gate needs at least 1000"),
    (["--if-better-than", "production", "--target", "label"], 2, "has no column 'label'"),
    (["--if-better-than", "production", "--on", "nowhere.csv"], 2, "needs --on DATA"),
])
def test_a_gate_that_cannot_judge_says_so_and_moves_nothing(tumours, args, code, message):
    flags = ["--on", tumours / "held.parquet", *args] if "--on" not in args else args
    out = workbench("models", "promote", "tumours", "2", "production", *flags)
    assert out.returncode == code and message in out.stdout + out.stderr, out.stdout + out.stderr
    assert model_version("tumours", "production").version == 1


def test_a_version_whose_files_changed_is_not_judged(tumours):
    tamper_kept("models:/tumours/2", "model.onnx")
    out = workbench("models", "promote", "tumours", "2", "production", "--if-better-than", "production", "--on", tumours / "held.parquet")
    assert out.returncode == 2 and "model.onnx no longer has the digest it was registered with" in out.stderr, out.stderr
    assert model_version("tumours", "production").version == 1


def test_rollback_without_an_earlier_version_says_so(tumours):
    out = workbench("models", "rollback", "tumours", "production")
    assert out.returncode == 2 and "has only ever held version 1" in out.stderr
    out = workbench("models", "rollback", "tumours", "staging")
    assert out.returncode == 2 and "no alias 'staging'; its aliases are production" in out.stderr


def test_a_gate_with_nothing_new_to_judge_passes_and_moves_nothing(tumours):
    "A CI run whose pipeline was all cached: the newest version is the one production holds."
    promote("tumours", 2, "production")
    out = workbench("models", "promote", "tumours", "latest", "production", "--if-better-than", "production", "--on", tumours / "held.parquet")
    assert out.returncode == 0 and "nothing to promote" in out.stdout, out.stdout + out.stderr
    assert model_version("tumours", "production").version == 2 and decisions("tumours").empty

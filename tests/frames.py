"""Frames as users bring them: text columns, categories, missing values in text and numbers, nullable integers.

`penguins()` is the Palmer penguins data as its package ships it (pandas' own text dtype, NaN in measurements and in
`sex`); `customers()` is generated with the same messiness, plus a `category` column, a nullable integer column and
rare text values. Both are shared by the export, serve and monitor tests of named inputs. `world()` is 28 frames of
the data sets that ship inside scikit-learn, statsmodels, palmerpenguins and vega_datasets, each with the estimator
or pipeline its users fit on it (tests/test_world_frames.py).
"""
import numpy as np
import pandas as pd


def penguins():
    "(X, species, body mass) of the Palmer penguins: island and sex as text (sex missing in 11 rows), four measurements with NaN."
    import palmerpenguins

    frame = palmerpenguins.load_penguins()
    species = frame.pop("species")
    mass = frame["body_mass_g"].fillna(frame["body_mass_g"].mean())
    return frame, species, mass


def customers(n: int = 600, seed: int = 0):
    "(X, churned): text with missing values and rare values, a category, a nullable integer, floats with NaN, and a binary target."
    rng = np.random.default_rng(seed)
    plan = rng.choice(["basic", "plus", "pro"], n, p=[0.5, 0.3, 0.2]).astype(object)
    plan[rng.random(n) < 0.05] = None
    region = rng.choice([f"region-{i}" for i in range(12)], n, p=np.r_[[0.2] * 4, [0.025] * 8]).astype(object)
    region[rng.random(n) < 0.03] = np.nan
    age = pd.array(rng.integers(18, 80, n), dtype="Int64")
    age[rng.random(n) < 0.04] = pd.NA
    spend = np.round(rng.gamma(2.0, 30.0, n), 2)
    spend[rng.random(n) < 0.05] = np.nan
    frame = pd.DataFrame({"plan": plan, "region": region, "channel": pd.Categorical(rng.choice(["web", "store", "phone"], n)),
                          "age": age, "spend": spend, "tenure": rng.integers(0, 120, n)})
    score = (frame["plan"] == "basic") * 1.2 - np.nan_to_num(spend) / 80 + (frame["tenure"] < 12) * 1.0 + rng.normal(0, 0.7, n)
    return frame, (score > 0.3).astype(int)


# Frames from the world: data sets that ship inside scikit-learn, statsmodels, palmerpenguins and vega_datasets, each
# fitted the way its users fit it. Each case is (loader -> (X, y), estimator factory).

def _sklearn(name):
    from sklearn import datasets

    bunch = getattr(datasets, f"load_{name}")(as_frame=True)
    return bunch.data, bunch.target


def _statsmodels(name, target):
    import statsmodels.datasets

    frame = getattr(statsmodels.datasets, name).load_pandas().data
    return frame.drop(columns=target), frame[target]


def _vega(name, target, drop=()):
    from vega_datasets import local_data

    frame = local_data(name).dropna(subset=[target])
    return frame.drop(columns=[target, *drop]), frame[target]


def _fertility():
    "Births per woman in 2011 from the years before, by country: text columns and many gaps."
    import statsmodels.datasets

    frame = statsmodels.datasets.fertility.load_pandas().data.dropna(subset=["2011"])
    X = frame.drop(columns=["2011", "2012", "2013"])
    return X.drop(columns=[c for c in X.columns if X[c].isna().mean() > 0.5]), frame["2011"]


def _penguins(target):
    import palmerpenguins

    frame = palmerpenguins.load_penguins().dropna(subset=[target])
    return frame.drop(columns=target), frame[target]


def world() -> dict:
    "name -> (loader, estimator factory): 28 frames of the world as their users fit them."
    import lightgbm
    import xgboost
    from sklearn.compose import ColumnTransformer
    from sklearn.compose import make_column_selector as select
    from sklearn.ensemble import (GradientBoostingRegressor, HistGradientBoostingClassifier, HistGradientBoostingRegressor,
                                  RandomForestClassifier, RandomForestRegressor)
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LinearRegression, LogisticRegression, Ridge
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, StandardScaler
    from sklearn.svm import SVC

    def mixed(model, text=None):
        "Text one-hot (or as `text` says), numbers imputed and scaled: the usual ColumnTransformer."
        text = text or make_pipeline(SimpleImputer(strategy="most_frequent"), OneHotEncoder(handle_unknown="ignore"))
        return make_pipeline(ColumnTransformer([("text", text, select(dtype_include=object)),
                                                ("numbers", make_pipeline(SimpleImputer(), StandardScaler()), select(dtype_include="number"))]), model)

    def binary(loader, cut=0):
        return lambda: (lambda X, y: (X, (y > cut).astype(int)))(*loader())

    scaled_logistic = lambda: make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    return {
        "breast_cancer-forest": (lambda: _sklearn("breast_cancer"), lambda: RandomForestClassifier(50, random_state=0)),
        "wine-logistic": (lambda: _sklearn("wine"), scaled_logistic),
        "digits-histgb": (lambda: _sklearn("digits"), lambda: HistGradientBoostingClassifier(max_iter=30, random_state=0)),
        "diabetes-ridge": (lambda: _sklearn("diabetes"), Ridge),
        "iris-columns-svc": (lambda: _sklearn("iris"), lambda: make_pipeline(ColumnTransformer(
            [("scale", StandardScaler(), ["petal length (cm)", "sepal width (cm)"])], remainder="passthrough"), SVC(probability=True, random_state=0))),
        "grunfeld-value": (lambda: _statsmodels("grunfeld", "invest"), lambda: mixed(LinearRegression())),
        "fair-logistic": (binary(lambda: _statsmodels("fair", "affairs")), scaled_logistic),
        "anes96-lightgbm": (lambda: _statsmodels("anes96", "vote"), lambda: lightgbm.LGBMClassifier(n_estimators=30, verbose=-1)),
        "star98-xgboost": (lambda: (lambda X, y: (X, y["NABOVE"]))(*_statsmodels("star98", ["NABOVE", "NBELOW"])),
                           lambda: xgboost.XGBRegressor(n_estimators=30)),
        "spector-logistic": (lambda: _statsmodels("spector", "GRADE"), LogisticRegression),
        "randhie-ints-histgb": (lambda: _statsmodels("randhie", "mdvis"), lambda: HistGradientBoostingRegressor(max_iter=30)),
        "macrodata-ridge": (lambda: _statsmodels("macrodata", "realgdp"), lambda: make_pipeline(StandardScaler(), Ridge())),
        "modechoice-forest": (lambda: _statsmodels("modechoice", "choice"), lambda: RandomForestClassifier(30, random_state=0)),
        "scotland-gbr": (lambda: _statsmodels("scotland", "YES"), lambda: GradientBoostingRegressor(random_state=0)),
        "fertility-text-gaps": (_fertility, lambda: mixed(Ridge())),
        "copper-linear": (lambda: _statsmodels("copper", "WORLDCONSUMPTION"), LinearRegression),
        "elnino-forest": (lambda: _statsmodels("elnino", "DEC"), lambda: RandomForestRegressor(30, random_state=0)),
        "penguins-species": (lambda: _penguins("species"), lambda: mixed(LogisticRegression(max_iter=2000))),
        "penguins-mass-xgboost": (lambda: _penguins("body_mass_g"), lambda: mixed(
            xgboost.XGBRegressor(n_estimators=30), OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1))),
        "penguins-lightgbm": (lambda: _penguins("species"), lambda: mixed(lightgbm.LGBMClassifier(n_estimators=30, verbose=-1))),
        "seattle-weather-histgb": (lambda: _vega("seattle-weather", "weather", ["date"]), lambda: HistGradientBoostingClassifier(max_iter=30, random_state=0)),
        "cars-mpg": (lambda: _vega("cars", "Miles_per_Gallon", ["Name", "Year"]), lambda: mixed(Ridge())),
        "barley-forest": (lambda: _vega("barley", "yield"), lambda: mixed(RandomForestRegressor(30, random_state=0))),
        "us-employment-ints": (lambda: _vega("us-employment", "nonfarm", ["month"]), Ridge),
        "driving-text": (lambda: _vega("driving", "gas"), lambda: mixed(LinearRegression())),
        "iris-vega-knn": (lambda: _vega("iris", "species"), KNeighborsClassifier),
        "anscombe-series": (lambda: _vega("anscombe", "Y"), lambda: mixed(LinearRegression())),
        "airports-state": (lambda: (lambda X, y: (X[["latitude", "longitude"]].head(800), y.fillna("none").head(800)))(
            *_vega("airports", "state")), KNeighborsClassifier),
    }

"""Frames as users bring them: text columns, categories, missing values in text and numbers, nullable integers.

`penguins()` is the Palmer penguins data as its package ships it (pandas' own text dtype, NaN in measurements and in
`sex`); `customers()` is generated with the same messiness, plus a `category` column, a nullable integer column and
rare text values. Both are shared by the export, serve and monitor tests of named inputs.
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

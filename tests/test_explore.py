"""explore on bad and odd input: a clear InputError where nothing can be shown, a warning where the data is merely odd.

Every case also renders the static report and builds the widget, so a crash anywhere on the way is caught.
"""

import numpy as np
import pandas as pd
import pytest

from workbench.core import InputError
from workbench.explore import compare, explore
from workbench.profiling import KINDS


@pytest.fixture(autouse=True)
def headless(monkeypatch):
    monkeypatch.setenv("WORKBENCH_DISPLAY", "headless")


def shown(data, **kw):
    "explore `data`, render the static report and build the widget; return the Explorer."
    ex = explore(data, **kw)
    html = ex._repr_mimebundle_()["text/html"]
    assert "Overview" in html
    ex.widget  # builds without error
    return ex


def warnings(ex) -> str:
    return " | ".join(f"{c}: {w}" for c, w in ex.profile.warnings)


def test_empty_frame():
    with pytest.raises(InputError, match="empty"):
        explore(pd.DataFrame())
    with pytest.raises(InputError, match="empty"):
        explore(pd.DataFrame({"a": []}))


def test_one_row():
    ex = shown(pd.DataFrame({"a": [1.5], "b": ["x"], "t": [pd.Timestamp("2024-01-01")]}))
    assert ex.profile.rows == 1 and ex.profile.columns["a"].std == 0.0


def test_all_nan_column():
    ex = shown(pd.DataFrame({"a": [np.nan] * 10, "b": range(10)}))
    assert "a: all values are missing" in warnings(ex)


def test_inf_values():
    ex = shown(pd.DataFrame({"a": [1.0, np.inf, -np.inf, 2.0, np.nan], "b": range(5)}))
    col = ex.profile.columns["a"]
    assert (col.infinite, col.missing, col.max) == (2, 1, 2.0)
    assert "a: 2 infinite values" in warnings(ex)


def test_mixed_type_object_column():
    ex = shown(pd.DataFrame({"m": [1, "two", 3.0, None, b"four", "two"]}))
    assert ex.profile.columns["m"].mixed_types and "mixed types" in warnings(ex)


def test_non_string_and_duplicate_column_names():
    df = pd.DataFrame([[1, 2, 3, 4]], columns=[0, "a", "a", 1.5])
    ex = shown(df)
    assert list(ex.profile.columns) == ["0", "a", "a.1", "1.5"]
    assert any("renamed" in n for n in ex.profile.notes) and list(df.columns) == [0, "a", "a", 1.5]


def test_multiindex_columns():
    df = pd.DataFrame(np.arange(8).reshape(2, 4), columns=pd.MultiIndex.from_product([["x", "y"], ["p", "q"]]))
    assert list(shown(df).profile.columns) == ["x/p", "x/q", "y/p", "y/q"]


def test_ten_thousand_columns_are_lazy():
    wide = pd.DataFrame(np.random.default_rng(0).normal(size=(50, 10_000)))
    ex = shown(wide)
    assert len(dict(ex.profile.columns)) == 200  # profiled up front; the rest on demand
    report = ex._repr_mimebundle_()["text/html"]
    assert "9,800 more columns" in report and "The first 50 of 10,000 columns" in report
    assert ex.profile.columns["9999"].count == 50


def test_high_cardinality_strings():
    ids = pd.DataFrame({"id": [f"user-{i:06d}" for i in range(100_000)], "v": np.arange(100_000) % 7})
    ex = shown(ids)
    assert ex.profile.columns["id"].unique == 100_000
    assert "high cardinality" in warnings(ex)


def test_datetime_with_time_zones():
    times = pd.date_range("2024-03-30", periods=72, freq="h", tz="Europe/Berlin")  # crosses a DST change
    ex = shown(pd.DataFrame({"t": times, "v": range(72)}))
    col = ex.profile.columns["t"]
    assert col.kind == "datetime" and col.min == times.min() and col.max == times.max()


def test_target_not_a_column():
    with pytest.raises(InputError, match="is not a column"):
        explore(pd.DataFrame({"a": [1, 2]}), target="label")


def test_missing_path_and_not_a_table(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        explore(tmp_path / "nothing.csv")
    (tmp_path / "model.bin").write_bytes(b"\x00\x01")
    with pytest.raises(InputError, match="not a table"):
        explore(tmp_path / "model.bin")
    (tmp_path / "broken.parquet").write_text("not parquet")
    with pytest.raises(InputError, match="could not read"):
        explore(tmp_path / "broken.parquet")


def test_image_folder_with_corrupt_file(tmp_path):
    from PIL import Image

    for cls in ("a", "b"):
        (tmp_path / cls).mkdir()
        for i in range(3):
            Image.fromarray(np.full((10, 12), 40 * i, dtype=np.uint8)).save(tmp_path / cls / f"{i}.png")
    (tmp_path / "b" / "bad.jpg").write_bytes(b"\xff\xd8 truncated")
    ex = shown(tmp_path)
    assert ex.profile.rows == 6 and "1 corrupt image file(s) skipped: bad.jpg" in ex.profile.notes
    assert "<img" in ex._repr_mimebundle_()["text/html"]


def test_wrong_types():
    with pytest.raises(InputError, match="cannot explore a int"):
        explore(42)
    with pytest.raises(InputError, match="must be a column name"):
        explore(np.zeros((3, 2)), target=np.zeros(3))


def test_bad_filter_query_keeps_data():
    ex = explore(pd.DataFrame({"a": range(10)}))
    with pytest.raises(InputError, match="failed"):
        ex.apply_filter("a >")
    with pytest.raises(InputError, match="no rows match"):
        ex.apply_filter("a > 100")
    assert ex.profile.rows == 10
    ex.apply_filter("a >= 5")
    assert ex.profile.rows == 5


def test_compare_bad_input():
    with pytest.raises(InputError, match="share no column"):
        compare(pd.DataFrame({"a": [1]}), pd.DataFrame({"b": [1]}))
    with pytest.raises(InputError, match="not in both"):
        compare(pd.DataFrame({"a": [1]}), pd.DataFrame({"a": [1]}), columns=["z"])
    empty = compare(pd.DataFrame({"a": [np.nan, np.nan]}), pd.DataFrame({"a": [1.0, 2.0]}))
    assert empty.drifted == [] and empty.table.loc[0, "test"] == "none"


class Point:
    def __init__(self, x):
        self.x = x

    def __repr__(self):
        return f"Point({self.x})"


CELLS = {
    "lists": lambda i: ["tag"] * (i % 3),
    "dicts": lambda i: {"k": i % 4, "nested": [i % 2]},
    "sets": lambda i: {i % 2, "x"},
    "tuples": lambda i: (i % 2, "x"),
    "arrays": lambda i: np.arange(i % 3),
    "objects": lambda i: Point(i % 5),
    "lists-among-strings": lambda i: "plain" if i % 2 else ["a", i % 3],
    "none-and-lists": lambda i: None if i % 4 == 0 else [i % 2],
}


@pytest.mark.parametrize("kind", CELLS)
def test_cells_holding_objects_are_profiled_by_their_text(kind):
    df = pd.DataFrame({"cell": [CELLS[kind](i) for i in range(400)], "x": np.arange(400.0), "y": np.arange(400) % 2})
    ex = shown(df, target="y")
    column = ex.profile.columns["cell"]
    assert column.kind == "object" and column.count + column.missing == 400 and column.unique >= 2
    assert sum(c for _, c in column.top) <= column.count
    assert isinstance(df["cell"].dropna().iloc[0], (list, dict, set, tuple, np.ndarray, Point, str))  # untouched
    assert compare(df, df.iloc[::-1]).table is not None


def test_structured_and_record_arrays_become_frames_by_field():
    records = np.zeros(50, dtype=[("size", "f4"), ("name", "U5"), ("legs", "i4")])
    records["legs"] = np.arange(50) % 4
    for data in (records, records.view(np.recarray)):
        assert list(shown(data).profile.columns) == ["size", "name", "legs"]


@pytest.mark.parametrize("env", ["widgets", "headless", "terminal"])
def test_every_environment_gets_a_static_html_report(env, monkeypatch):
    monkeypatch.setenv("WORKBENCH_DISPLAY", env)
    frame = pd.DataFrame({"a": np.arange(20), "b": list("xy") * 10})
    for shown_object in (explore(frame), compare(frame, frame)):
        bundle = shown_object._repr_mimebundle_()
        assert "<table" in bundle["text/html"] and bundle["text/plain"]
        assert ("application/vnd.jupyter.widget-view+json" in bundle) == (env == "widgets")


def _frames():
    "Frames of the kinds people bring: every dtype pandas and Arrow hold, and the datasets scikit-learn ships."
    import datetime as dt
    import decimal

    import pyarrow as pa
    from sklearn import datasets

    n, rng = 200, np.random.default_rng(0)
    frames = {
        "nullable-int": pd.DataFrame({"a": pd.array([1, None, 3, 4] * 50, dtype="Int64"), "y": [0, 1] * 100}),
        "nullable-bool": pd.DataFrame({"a": pd.array([True, None, False, True] * 50, dtype="boolean")}),
        "nullable-float": pd.DataFrame({"a": pd.array([1.5, None, 3.0, np.nan] * 50, dtype="Float64")}),
        "string-dtype": pd.DataFrame({"a": pd.array(["x", None, "y", "z"] * 50, dtype="string")}),
        "arrow-string": pd.DataFrame({"a": pd.array(["x", None, "y", "z"] * 50, dtype="string[pyarrow]")}),
        "arrow-int": pd.DataFrame({"a": pd.array([1, None, 3, 4] * 50, dtype="int64[pyarrow]")}),
        "arrow-list": pd.DataFrame({"a": pd.array([[1, 2], None, [3], []] * 50, dtype=pd.ArrowDtype(pa.list_(pa.int64())))}),
        "categorical-ints": pd.DataFrame({"a": pd.Categorical([1, 2, 3, None] * 50)}),
        "period": pd.DataFrame({"a": pd.period_range("2020-01", periods=n, freq="M")}),
        "interval": pd.DataFrame({"a": pd.interval_range(0, n), "b": rng.normal(size=n)}),
        "timedelta": pd.DataFrame({"a": pd.to_timedelta(rng.integers(0, 1000, n), unit="s"), "b": rng.normal(size=n)}),
        "complex": pd.DataFrame({"a": rng.normal(size=n) + 1j * rng.normal(size=n)}),
        "decimal": pd.DataFrame({"a": [decimal.Decimal(i) / 7 for i in range(n)]}),
        "dates-as-objects": pd.DataFrame({"a": [dt.date(2020, 1, 1 + i % 28) for i in range(n)]}),
        "bytes-not-utf8": pd.DataFrame({"a": [b"\x00\xff" * (i % 3) for i in range(n)]}),
        "mixed-time-zones": pd.DataFrame({"a": [pd.Timestamp("2020-01-01", tz="UTC"), pd.Timestamp("2020-01-01", tz="Asia/Tokyo")] * 100}),
        "uint64-above-int64": pd.DataFrame({"a": np.array([2**63 + i for i in range(n)], dtype=np.uint64)}),
        "float16": pd.DataFrame({"a": rng.normal(size=n).astype(np.float16)}),
        "sparse": pd.DataFrame({"a": pd.arrays.SparseArray([0, 0, 1, 0] * 50)}),
        "datetime-index": pd.DataFrame({"a": range(n)}, index=pd.date_range("2020", periods=n)),
        "duplicate-index": pd.DataFrame({"a": range(n)}, index=[0] * n),
        "booleans-with-none": pd.DataFrame({"a": [True, None, False] * 66 + [True, True]}),
    }
    for name in ("iris", "wine", "breast_cancer", "diabetes", "digits", "linnerud"):
        frames[f"sklearn-{name}"] = getattr(datasets, f"load_{name}")(as_frame=True).frame
    return frames


FRAMES = _frames()


@pytest.mark.parametrize("name", FRAMES)
def test_frames_people_bring(name):
    df = FRAMES[name]
    ex = shown(df)
    assert ex.profile.rows == len(df) and set(ex.profile.kinds.values()) <= set(KINDS)
    try:
        drift = compare(df, df.iloc[::-1])
    except InputError as e:  # only where no shared column is numeric, categorical or boolean
        assert "none of the shared columns can be compared" in str(e)
    else:
        assert not drift.drifted and "<table" in drift._repr_mimebundle_()["text/html"]


def _frames_with_duplicates():
    "Frames whose duplicate rows hide where a shortcut could miss them: NaN, ties, rows equal but in one column, copies."
    rng = np.random.default_rng(7)
    base = pd.DataFrame({"x": rng.normal(size=500), "k": rng.integers(0, 3, 500), "s": rng.choice(["a", "b"], 500)})
    base.loc[::7, "x"] = np.nan
    yield "nan rows", base
    yield "copies", pd.concat([base, base.iloc[:40]])
    tied = base.copy()
    tied["x"] = np.round(tied["x"], 1)  # many ties in the narrow column
    yield "ties", pd.concat([tied, tied.iloc[5:9]])
    other = pd.concat([base, base.iloc[:3].assign(s="z")])  # equal in x, different elsewhere: not duplicates
    yield "equal but in one column", other
    yield "all nan", pd.DataFrame({"x": [np.nan] * 6, "k": [1, 1, 2, 2, 3, 4]})
    yield "infinities", pd.DataFrame({"x": [np.inf, np.inf, -np.inf, 1.0, 1.0], "k": [1, 1, 1, 2, 3]})
    yield "distinct but missing", pd.DataFrame({"x": [1.0, np.nan, 2.0, np.nan, -0.0, 0.0, np.inf], "k": [1, 5, 1, 5, 2, 2, 3]})


@pytest.mark.parametrize("name,frame", list(_frames_with_duplicates()), ids=[n for n, _ in _frames_with_duplicates()])
def test_duplicate_rows_counted_as_pandas_counts_them(name, frame):
    from workbench.profiling import _duplicate_rows, profile

    expected = int(frame.duplicated().sum())
    assert _duplicate_rows(frame, ["x"]) == _duplicate_rows(frame, ["x", "k"]) == _duplicate_rows(frame) == expected == profile(frame).duplicate_rows
    distinct = frame["x"].dropna().is_unique  # the profile's shortcut: only missing values can repeat
    assert _duplicate_rows(frame, ["x"], ["x"] if distinct else []) == expected


@pytest.mark.parametrize("rows", [
    [[1.0, 2.0, np.nan], [2.0, np.nan, 1.0], [3.0, 4.0, 2.0], [4.0, 5.0, np.nan]],  # pairs over different rows
    [[1.0, 5.0, np.nan], [2.0, 5.0, np.nan], [3.0, 5.0, 1.0]],  # a constant column, a column with one value
    [[1e12 + 1, 1.0, 0.0], [1e12 + 2, 2.0, 0.0], [1e12 + 4, 3.5, 1.0]],  # large offsets: centred first (pandas loses digits here)
])
def test_pairwise_correlation_is_pandas_corr(rows):
    "Each pair over the rows where both are present, as pandas' corr; checked on the frame moved to small numbers (r does not move)."
    from workbench.profiling import _pairwise_corr

    frame = pd.DataFrame(rows)
    exact = (frame - frame.min()).corr().to_numpy()
    np.testing.assert_allclose(_pairwise_corr(frame.to_numpy()), exact, rtol=1e-9, atol=1e-12, equal_nan=True)

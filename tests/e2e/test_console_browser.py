"""The console (`workbench ui`) in a real browser (Debian's Chromium driven by Playwright), over a store that real
commands filled: a pipeline run twice (its second stage exports a model, so two versions), a sweep, a failed run, a
promotion by hand and one through the gate; and a store of 1,000 runs (the one `bench/console.py` times). A
screenshot of each page at 1400x1000 goes to test-results/e2e/; each page must fit a 1280-wide screen without scrolling
sideways.
"""
import importlib.util
import os
import signal
import subprocess
import textwrap

import nbformat
import pytest
from sklearn.datasets import load_iris

from conftest import RESULTS, ROOT, WORKBENCH, workbench
from test_lab import _port, browser  # noqa: F401 (the browser fixture)
from workbench.notebooks import make_notebook

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e")]
SHOTS = RESULTS / "e2e"
PREPARE = """\
from pathlib import Path
import pandas as pd
from workbench.runs import record
frame = pd.read_csv(source)
frame.iloc[::3].to_csv(Path(run_dir) / "held.csv", index=False)
frame.drop(frame.index[::3]).to_csv(Path(run_dir) / "train.csv", index=False)
record("rows", len(frame))"""
FIT = """\
from pathlib import Path
import pandas as pd
from sklearn.linear_model import LogisticRegression
from workbench.export import export
from workbench.runs import record
frame = pd.read_csv(data)
X, y = frame.drop(columns="target").to_numpy("float32"), frame["target"]
model = LogisticRegression(C=C, max_iter=500).fit(X, y)
for step in range(1, 4):
    record("loss", 1 / (step * C + 1), step=step)
record("accuracy", model.score(X, y))
export(model, X[:8], Path(run_dir) / "bundle", name="iris", overwrite=True)"""


def _serve(store):
    "`workbench ui` on `store`: its address, the server."
    port = _port()
    server = subprocess.Popen([WORKBENCH, "ui", "--port", str(port), "--store", str(store)], stdout=subprocess.PIPE, text=True,
                              start_new_session=True)
    assert server.stdout.readline().startswith(f"workbench ui: http://127.0.0.1:{port}/")
    return f"http://127.0.0.1:{port}", server


@pytest.fixture(scope="module")
def console(tmp_path_factory):
    "A store filled by real commands, and `workbench ui` serving it; the server is always stopped."
    root = tmp_path_factory.mktemp("console")
    store = root / "runs.db"
    load_iris(as_frame=True).frame.to_csv(root / "iris.csv", index=False)
    nbformat.write(make_notebook(PREPARE, params_cell="run_dir = '.'\nsource = 'iris.csv'"), root / "prepare.ipynb")
    nbformat.write(make_notebook(FIT, params_cell="run_dir = '.'\ndata = 'train.csv'\nC = 1.0"), root / "fit.ipynb")
    nbformat.write(make_notebook("raise ValueError(f'no data at {path}')", params_cell="path = 'missing.csv'"), root / "broken.ipynb")
    (root / "iris.yaml").write_text(textwrap.dedent(f"""\
        name: iris
        params: {{C: 0.01}}
        stages:
          prepare: {{notebook: prepare.ipynb, inputs: [iris.csv], params: {{source: {root / 'iris.csv'}}}, outputs: {{train: train.csv, held: held.csv}}}}
          fit: {{notebook: fit.ipynb, params: {{data: "${{prepare.outputs.train}}"}}}}
        """))
    for C in ("0.01", "1.0"):  # a folder each: a pipeline run again into one folder writes over the older version's bundle
        done = workbench("run", root / "iris.yaml", "-o", root / f"out-{C}", "-p", f"C={C}", "--no-lock", "--store", store)
        assert done.returncode == 0, done.stdout + done.stderr
    done = workbench("sweep", root / "fit.ipynb", "-p", "C=0.1,1,10", "-p", f"data={root / 'out-1.0' / 'train.csv'}", "--metric", "accuracy",
                     "-o", root / "sweep", "--store", store)
    assert done.returncode == 0, done.stdout + done.stderr
    assert workbench("run", root / "broken.ipynb", "-o", root / "broken", "--store", store).returncode == 1
    assert workbench("models", "promote", "iris", "1", "production", "--store", store).returncode == 0
    gated = workbench("models", "promote", "iris", "2", "production", "--if-better-than", "production", "--on", root / "out-1.0" / "held.csv",
                      "--min-rows", "30", "--store", store)
    assert gated.returncode in (0, 1) and "promoted" in gated.stdout, gated.stdout + gated.stderr
    address, server = _serve(store)
    try:
        yield address
    finally:
        os.killpg(server.pid, signal.SIGINT)
        server.wait(timeout=20)


def _look(browser, url: str, name: str):
    "Open `url` at 1280 wide (nothing may scroll sideways), then at 1400x1000 for the screenshot; the page."
    narrow = browser.new_page(viewport={"width": 1280, "height": 900})
    assert narrow.goto(url).status == 200
    assert narrow.evaluate("document.documentElement.scrollWidth") <= 1280, f"{name} scrolls sideways at 1280"
    narrow.close()
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    assert page.goto(url).status == 200
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"console-{name}.png"), full_page=True)
    return page


def _follow(page, link):
    "Click `link`, which opens a page, and wait for that page's load event: nothing is counted on a page half parsed."
    with page.expect_navigation(wait_until="load"):
        link.click()


def test_runs_grouped_with_their_key_columns_and_a_picker(console, browser):
    page = _look(browser, console + "/", "runs")
    groups = page.locator("tr.group").all_inner_texts()
    assert any(g.startswith("SWEEP") and "fit" in g and "3 runs (3 ok)" in g for g in groups), groups
    assert sum(g.startswith("PIPELINE") and "iris" in g for g in groups) == 2, groups
    heads = page.locator("thead th").all_inner_texts()
    assert {"C", "accuracy", "loss"} <= set(heads) and "source" not in heads and "run_dir" not in heads, heads  # paths left out
    assert not any("sequence" in g for g in groups), groups  # one notebook run alone has no heading
    failed = page.locator("tbody tr:has(.s-failed)")
    assert failed.count() == 1 and "broken" in failed.inner_text() and "just now" in failed.inner_text()
    page.locator("summary", has_text="columns").click()
    page.locator("input[name=cols][value='param.source']").click()
    page.locator("input[name=cols][value='value.accuracy']").click()
    _follow(page, page.locator("button", has_text="show"))
    heads = page.locator("thead th").all_inner_texts()
    assert "source" in heads and "accuracy" not in heads and "C" in heads, heads
    _follow(page, page.locator("tr.group a b", has_text="fit").first)  # a group alone
    assert page.locator("tr.group").count() == 1 and "3 runs in 1 group" in page.content()
    page.close()


def test_ticked_runs_compared(console, browser):
    page = _look(browser, console + "/?q=sweep", "runs-sweep")
    for box in page.locator("tbody input[type=checkbox]").all()[:2]:
        box.check()
    _follow(page, page.locator("button", has_text="compare the ticked runs"))
    assert "/compare?" in page.url and page.locator("h2").inner_text() == "2 runs compared"
    assert page.locator("img[alt='histories']").count() == 1 and page.locator("img[alt='parallel coordinates']").count() == 1
    _look(browser, page.url, "compare").close()
    page.close()


def test_a_run_and_its_pages(console, browser):
    page = _look(browser, console + "/?q=iris", "runs-pipeline")
    _follow(page, page.locator("tbody a", has_text="fit").first)
    assert page.locator("h3", has_text="histories").count() == 1 and page.locator("img[alt='loss']").count() == 1
    assert page.locator("h3", has_text="model versions it made").count() == 1
    _look(browser, page.url, "run").close()
    _follow(page, page.locator("a", has_text="the executed notebook"))
    assert page.locator("text=LogisticRegression").count() >= 1
    page.close()


def test_the_models_and_a_model_page(console, browser):
    page = _look(browser, console + "/models", "models")
    assert "production → v" in page.locator("table").inner_text()
    _follow(page, page.locator("a", has_text="iris"))
    assert page.locator("h2").inner_text() == "model iris"
    moves = page.locator("h3:has-text('alias moves') + div table tbody tr")
    assert moves.count() >= 1 and page.locator("td .badge", has_text="promoted").or_(page.locator("td .badge", has_text="refused")).count() == 1
    page.locator("summary", has_text="test on 50 rows").click()
    assert page.locator("th", has_text="challenger").is_visible()
    assert page.locator("img[alt^='lineage of']").count() == 1 and "iris.csv" in page.locator("pre").last.inner_text()
    _look(browser, page.url, "model").close()
    page.close()


def test_bad_questions_are_said_and_the_console_only_reads(console, browser):
    import urllib.error
    import urllib.request

    for path, status, said in (("/compare?id=nope", 400, "tick two runs or more"), ("/models/iris?version=9", 400, "no version 9"),
                               ("/runs/nope", 404, "nothing at"), ("/models/nope", 404, "nothing at")):
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(console + path)
        assert e.value.code == status and said in e.value.read().decode(), path
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(urllib.request.Request(console + "/", data=b"x", method="POST"))
    assert e.value.code == 501


@pytest.fixture(scope="module")
def thousand(tmp_path_factory):
    "A store of 1,000 runs (a 200-trial study, 8 sweeps of 50, 40 pipeline runs, 200 runs alone) and `workbench ui` on it."
    from workbench.store import RunStore

    spec = importlib.util.spec_from_file_location("bench_console", ROOT / "bench" / "console.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    root = tmp_path_factory.mktemp("thousand")
    ids = bench.fill(RunStore(root / "runs.db"), root / "runs")
    RunStore(root / "runs.db").set_goal("tune:study:", "accuracy", "max")
    address, server = _serve(root / "runs.db")
    try:
        yield address, ids
    finally:
        os.killpg(server.pid, signal.SIGINT)
        server.wait(timeout=20)


def test_a_thousand_runs_paged_sorted_and_picked(thousand, browser):
    console, ids = thousand
    page = _look(browser, console + "/", "runs-1000")
    shown = page.locator("tbody tr:not(.group) a[href^='/runs/']").count()
    assert 250 <= shown <= 400 and "1,000 runs in" in page.content(), shown  # about 300 a page, not 1,000
    _follow(page, page.locator("a", has_text="show more"))
    assert page.locator("tbody tr:not(.group) a[href^='/runs/']").count() > shown
    page = _look(browser, console + "/?q=tune:study:", "runs-study")
    rows = page.locator("tbody tr:not(.group)")
    assert rows.count() == 200 and rows.first.locator(".best").count() == 1  # one group: all of it, its best first, starred
    column = page.locator("thead th").all_inner_texts().index("accuracy")
    scores = [float(t) for t in rows.locator(f"td:nth-child({column + 1})").all_inner_texts()[:20]]
    assert scores == sorted(scores, reverse=True), scores
    page.locator("summary", has_text="columns").click()
    page.locator("input[type=search]").fill("drop")
    visible = [label for label in page.locator("details.picker label").all() if label.is_visible()]
    assert [v.inner_text().strip() for v in visible] == ["dropout"], [v.inner_text() for v in visible]
    page.close()


def test_fifty_runs_compared_readably(thousand, browser):
    console, ids = thousand
    page = _look(browser, console + "/?q=" + ids["sweep"], "runs-sweep-50")
    _follow(page, page.locator("tr.group a", has_text="compare"))
    assert page.locator("h2").inner_text() == "50 runs compared"
    assert page.locator("text=the same in all 50 runs").count() == 1 and page.locator("pre").count() == 0  # the code once
    heads = page.locator("h3:text-is('values') + table tr:first-child th").all_inner_texts()
    assert "lr=0.001,depth=2" in heads and "lr=1.0,depth=11" in heads, heads  # labelled as the runs page labels them
    assert not any(h.startswith("change") for h in heads), heads  # no 49 change columns
    _look(browser, page.url, "compare-50").close()
    page.close()

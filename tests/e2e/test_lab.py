"""The widgets in a real JupyterLab, in a real browser (Debian's Chromium driven by Playwright), as a person uses them.

Each scenario opens a notebook, runs it from the Run menu, and asserts on what the page shows; a screenshot of each
goes to test-results/e2e/. The server and the browser are always shut down, also when a test fails.
"""
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from conftest import RESULTS, write_notebook

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e")]  # one server, one browser, one worker
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SHOTS = RESULTS / "e2e"
NOTEBOOK = ".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook"  # the notebook in view, not a hidden tab


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]




@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    if not Path(CHROMIUM).exists():
        pytest.fail("Chromium is missing: apt-get install -y chromium (.ci/run does this)")
    root = tmp_path_factory.mktemp("lab")
    token, port = secrets.token_hex(16), _port()
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(root / ".jupyter"), "JUPYTERLAB_WORKSPACES_DIR": str(root / ".ws")}
    env.pop("WORKBENCH_DISPLAY", None)
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "jupyter-lab"), "--no-browser", "--ip", "127.0.0.1", "--port", str(port),
         f"--IdentityProvider.token={token}", f"--notebook-dir={root}", "--allow-root"],
        stdout=subprocess.DEVNULL, stderr=open(root / "server.log", "w"), env=env, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 60
        while True:
            try:
                urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=2)
                break
            except OSError:
                if time.time() > deadline or server.poll() is not None:
                    raise RuntimeError(f"JupyterLab did not start:\n{(root / 'server.log').read_text()[-3000:]}")
                time.sleep(0.3)
        yield {"url": url, "token": token, "root": root}
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync"])
        try:
            yield b
        finally:
            b.close()


def open_and_run(lab, browser, name: str, *sources: str):
    "Write a notebook, open it in JupyterLab, run all its cells; return the page."
    write_notebook(lab["root"] / name, *sources)
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(f"{lab['url']}/lab/workspaces/{Path(name).stem}/tree/{name}?reset&token={lab['token']}")  # only this notebook
    page.wait_for_selector(f"{NOTEBOOK} .jp-Cell", timeout=60_000)
    page.get_by_text("| Idle").first.wait_for(timeout=60_000)  # the kernel is up
    for i in range(len(sources)):
        cell = page.locator(f"{NOTEBOOK} .jp-CodeCell").nth(i)
        prompt = cell.locator(".jp-InputPrompt").first
        for _ in range(5):  # a key press sent while the notebook still settles can be lost: press again
            cell.locator(".jp-InputArea-editor").click()
            page.keyboard.press("Shift+Enter")
            try:
                page.wait_for_function("p => !p.textContent.includes('[ ]')", arg=prompt.element_handle(), timeout=5_000)
                break
            except Exception:
                continue
    return page


def shot(page, name):
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def image_changes(page, image, within: float = 30.0) -> bool:
    "Whether `image` shows another picture within `within` seconds (a loaded machine builds a fit's first round slowly)."
    first, deadline = image.get_attribute("src"), time.monotonic() + within
    while time.monotonic() < deadline:
        page.wait_for_timeout(250)
        if image.get_attribute("src") != first:
            return True
    return False


def test_explore_widget(lab, browser):
    page = open_and_run(lab, browser, "explore.ipynb",
                        "from sklearn.datasets import load_digits\nfrom workbench.explore import explore\n"
                        "explore(load_digits(as_frame=True).frame, target='target')")
    try:
        tabs = page.locator(".jupyter-widgets .lm-TabBar-tab")
        tabs.first.wait_for(timeout=40_000)
        assert [t.strip() for t in tabs.all_inner_texts()][:6] == ["Overview", "Columns", "Correlations", "Target", "Sample", "Filter"]
        overview = page.locator(".jupyter-widgets .wb-report").first
        assert "1,797" in overview.inner_text()
        tabs.nth(1).click()  # Columns: picking a column draws its plot
        page.locator(".jupyter-widgets select").first.select_option("pixel_0_4")
        page.locator(".jupyter-widgets img").first.wait_for(timeout=30_000)
        assert page.locator(".jupyter-widgets img").count() >= 1
        tabs.nth(5).click()  # Filter: a bad query shows its error inside the widget
        query = page.locator(".jupyter-widgets input[type='text']").first
        query.fill("pixel_0_4 >")
        page.locator(".jupyter-widgets button", has_text="Apply").click()
        page.get_by_text("failed", exact=False).first.wait_for(timeout=30_000)
    finally:
        shot(page, "explore")
        page.close()


def test_export_button(lab, browser):
    bundle = lab["root"] / "bundles" / "mlp"
    page = open_and_run(lab, browser, "export.ipynb",
                        "import torch\nfrom workbench.export import ExportButton\nfrom workbench.train import synth_mlp\n"
                        f"ExportButton(synth_mlp(), torch.randn(4, 8), path={str(bundle)!r}, formats=['safetensors'])")
    try:
        export = page.locator(".jupyter-widgets button", has_text="Export")
        export.wait_for(timeout=120_000)
        page.get_by_text("onnx", exact=True).click()  # tick a second format
        export.click()
        page.get_by_text("parity", exact=False).first.wait_for(timeout=120_000)
        assert (bundle / "model.safetensors").exists() and (bundle / "model.onnx").exists()
    finally:
        shot(page, "export-button")
        page.close()


def test_training_progress_and_interrupt(lab, browser):
    page = open_and_run(
        lab, browser, "train.ipynb",
        "import time, torch\nfrom workbench.train import Callback, Trainer, synth_classification, synth_mlp\n"
        "class Slow(Callback):\n    def after_batch(self, t):\n        time.sleep(0.05)\n"
        "t = Trainer(synth_mlp(), *synth_classification(n=4096), callbacks=[Slow()], lr=1e-2)\nresult = t.fit(50)",
        "print('next cell ran, interrupted =', result.interrupted, 'steps =', t.global_step)")
    try:
        bar = page.locator(".jupyter-widgets .widget-hprogress, .jupyter-widgets progress, .jupyter-widgets .progress").first
        bar.wait_for(timeout=60_000)
        curve = page.locator(".jupyter-widgets img").first
        curve.wait_for(timeout=30_000)
        assert image_changes(page, curve) and image_changes(page, curve), "the loss curve did not update while training"
        page.get_by_role("menuitem", name="Kernel").click()
        page.get_by_text("Interrupt Kernel", exact=True).click()
        page.get_by_text("next cell ran, interrupted = True").wait_for(timeout=60_000)
        assert page.get_by_text("stopped").count() >= 1
    finally:
        shot(page, "train-progress")
        page.close()


@pytest.mark.parametrize("library", ["keras", "xgboost"])
def test_other_libraries_show_the_same_live_widget_and_stop_on_interrupt(lab, browser, library):
    fit = {
        "keras": ("import os, time\nos.environ['KERAS_BACKEND'] = 'torch'\nimport keras, numpy as np\n"
                  "from workbench.frameworks import keras_callback\n"
                  "x, y = np.random.rand(4096, 8).astype('float32'), np.random.randint(0, 2, 4096)\n"
                  "model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(2)])\n"
                  "model.compile(optimizer='adam', loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))\n"
                  "slow = keras.callbacks.LambdaCallback(on_train_batch_end=lambda batch, logs: time.sleep(0.05))\n"
                  "history = model.fit(x, y, validation_split=0.2, epochs=50, verbose=0, callbacks=[keras_callback(), slow])\n"
                  "done = len(history.history['loss'])"),
        "xgboost": ("import numpy as np, xgboost\nfrom workbench.estimators import fit_estimator\n"
                    "rng = np.random.default_rng(0)\nX = rng.normal(size=(200_000, 40)).astype('float32')\n"
                    "y = (X[:, :5].sum(1) + rng.normal(size=len(X)) > 0).astype(int)\n"
                    "result = fit_estimator(xgboost.XGBClassifier(n_estimators=3000, max_depth=8, learning_rate=0.01), X, y, patience=3000)\n"
                    "done = len(result.history)"),
    }[library]
    page = open_and_run(lab, browser, f"{library}.ipynb", fit, "print('next cell ran after', done + 1000)")
    try:
        curve = page.locator(".jupyter-widgets img").first
        curve.wait_for(timeout=90_000)
        assert image_changes(page, curve) and image_changes(page, curve), "the curve did not update while fitting"  # twice: live, not once at the end
        page.get_by_role("menuitem", name="Kernel").click()
        page.get_by_text("Interrupt Kernel", exact=True).click()
        page.get_by_text(re.compile(r"next cell ran after 1\d\d\d")).wait_for(timeout=60_000)  # at a boundary, no exception
        assert page.get_by_text("stopped").count() >= 1
    finally:
        shot(page, f"{library}-progress")
        page.close()


def test_executed_demo_notebook_shows_report_without_running(lab, browser):
    from conftest import ROOT
    from workbench.run import run_notebook

    run = run_notebook(ROOT / "nbs" / "pipelines" / "explore.ipynb", {"smoke": True, "run_dir": str(lab["root"] / "demo")},
                       out_dir=lab["root"] / "executed", html=False)
    assert run.ok, run.describe_error()
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    try:
        page.goto(f"{lab['url']}/lab/workspaces/executed/tree/executed/explore.ipynb?reset&token={lab['token']}")
        page.locator(".jp-OutputArea-output", has_text="Images per class").first.wait_for(timeout=60_000)
        assert page.locator(".jp-OutputArea-output", has_text="Overview").count() >= 1
        assert page.locator(".jp-OutputArea img").count() >= 20  # sparklines and the image grid, as saved
        assert page.get_by_text("Error displaying widget").count() == 0
    finally:
        shot(page, "executed-explore")
        page.close()


def test_evaluate_widget_switches_groups(lab, browser):
    page = open_and_run(lab, browser, "evaluate.ipynb",
                        "import numpy as np, pandas as pd\nfrom sklearn.datasets import load_breast_cancer\n"
                        "from sklearn.linear_model import LogisticRegression\nfrom workbench.evaluate import evaluate\n"
                        "X, y = load_breast_cancer(return_X_y=True, as_frame=True)\n"
                        "groups = pd.DataFrame({'size': np.where(X['mean radius'] > 14, 'large', 'small'),\n"
                        "                       'texture': np.where(X['mean texture'] > 19, 'rough', 'smooth')})\n"
                        "evaluate(LogisticRegression(max_iter=5000).fit(X, y), X, y, groups=groups, resamples=100)")
    try:
        tabs = page.locator(".jupyter-widgets .lm-TabBar-tab")
        tabs.first.wait_for(timeout=60_000)
        titles = [t.strip() for t in tabs.all_inner_texts()]
        assert titles[:5] == ["Summary", "Plots", "Per class", "Groups", "Worst"], titles
        assert "accuracy" in page.locator(".jupyter-widgets .wb-report").first.inner_text()
        tabs.nth(3).click()
        groups = page.locator(".jupyter-widgets .wb-report", has_text="within the rules").or_(
            page.locator(".jupyter-widgets .wb-report", has_text="unequal across groups")).first
        groups.wait_for(timeout=30_000)
        assert "rough" in groups.inner_text() and "large" in groups.inner_text()  # both columns: their intersection
        from playwright.sync_api import expect

        page.locator(".jupyter-widgets select").first.select_option("size")
        expect(page.locator(".jupyter-widgets .wb-report", has_text="rough")).to_have_count(0, timeout=30_000)  # redrawn
        redrawn = page.locator(".jupyter-widgets .wb-report", has_text="accuracy_difference").first.inner_text()
        assert "large" in redrawn and "small" in redrawn
    finally:
        shot(page, "evaluate-groups")
        page.close()

"""`workbench ui` from the command line as a user starts it; the pages in a browser are tests/e2e/test_console_browser.py."""
import os
import signal
import subprocess
import urllib.error
import urllib.request

import pytest

from conftest import WORKBENCH, workbench
from test_tracking import _runs

pytestmark = pytest.mark.both_stores  # each test on a SQLite store and on a PostgreSQL one


def test_workbench_ui_serves_runs_models_and_notebooks_and_says_when_its_port_is_taken(tmp_path):
    runs = _runs(tmp_path)
    port = 18765 + os.getpid() % 1000
    server = subprocess.Popen([WORKBENCH, "ui", "--port", str(port)], stdout=subprocess.PIPE, text=True)
    try:
        first = server.stdout.readline()
        assert first.startswith(f"workbench ui: http://127.0.0.1:{port}/") and "this machine only" in first
        base = f"http://127.0.0.1:{port}"
        page = urllib.request.urlopen(f"{base}/?q={runs[1].id}").read().decode()
        assert runs[1].id in page and runs[0].id not in page
        run_page = urllib.request.urlopen(f"{base}/runs/{runs[1].id}").read().decode()
        assert 'alt="loss"' in run_page and "the executed notebook" in run_page
        assert urllib.request.urlopen(f"{base}/runs/{runs[1].id}/notebook").read().decode().startswith("<!DOCTYPE html>")
        assert "no model registered yet" in urllib.request.urlopen(f"{base}/models").read().decode()
        with pytest.raises(urllib.error.HTTPError, match="404"):
            urllib.request.urlopen(f"{base}/runs/nope")
        with pytest.raises(urllib.error.HTTPError, match="400"):  # one run is not a comparison
            urllib.request.urlopen(f"{base}/compare?id={runs[0].id}")
        both = urllib.request.urlopen(f"{base}/compare?id={runs[0].id}&id={runs[1].id}").read().decode()
        assert "2 runs compared" in both and 'alt="histories"' in both
    finally:
        server.send_signal(signal.SIGINT)
        assert server.wait(10) == 0
    busy = subprocess.Popen([WORKBENCH, "ui", "--port", str(port)], stdout=subprocess.PIPE, text=True)
    assert busy.stdout.readline().startswith("workbench ui: ")  # it listens (a fixed sleep lost this race on a busy machine)
    taken = workbench("ui", "--port", port, timeout=60)
    busy.send_signal(signal.SIGINT)
    busy.wait(10)
    assert taken.returncode == 2 and "choose another --port" in taken.stderr


def test_the_small_things_a_page_got_wrong(tmp_path):
    import torch
    from torch import nn

    from workbench.console import respond
    from workbench.export import export
    from workbench.registry import promote, register
    from workbench.store import RunStore
    from workbench.tracking import _code_diff

    runs, store = _runs(tmp_path), RunStore()
    status, page = respond(store, "/", {"last": ["abc"]})
    assert status == 400 and "?last= is how many runs to show" in page
    status, page = respond(store, "/", {})
    assert status == 200 and "title='nan'" not in page and 'title="nan"' not in page  # runs without an error have no tooltip
    assert _code_diff(runs[0].output, runs[1].output) == ""  # the same notebook: nothing to show, nothing computed
    for seed in (0, 1):
        torch.manual_seed(seed)
        register(export(nn.Linear(4, 1).eval(), torch.randn(8, 4), tmp_path / f"v{seed}", name="scorer", formats=["onnx"]).path)
    promote("scorer", 1, "production")
    promote("scorer", 2, "staging")
    status, page = respond(store, "/models/scorer", {})
    assert status == 200 and "<b>v1</b>" in page and "lineage of v1" in page  # production first, not the newer staging

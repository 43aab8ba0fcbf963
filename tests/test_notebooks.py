"""The notebooks in nbs/ are the project's tests, executed by the same runner users run: `workbench test`.

Each chapter runs in its own kernel, two at a time, with smoke values offered to the notebooks that declare them.
A failure prints the notebook, the cell, its first line and the exception; executed notebooks are kept under
test-results/notebooks/ and the JUnit report at test-results/notebooks.xml. The demo pipeline's stages depend on each
other, so they run as a sequence in their own test.
"""
import subprocess
import sys
from xml.etree import ElementTree
from pathlib import Path

import pytest

from conftest import RESULTS, ROOT
from workbench.pipeline import run_sequence

WORKBENCH = str(Path(sys.executable).parent / "workbench")
CHAPTERS = sorted((ROOT / "nbs").glob("*.ipynb"))
DEMO = [ROOT / "nbs" / "pipelines" / f"{stage}.ipynb" for stage in ("explore", "train", "export")]


def test_every_notebook_is_collected():
    on_disk = {p for p in (ROOT / "nbs").rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts}
    assert on_disk == set(CHAPTERS) | set(DEMO), "a notebook in nbs/ is neither a chapter nor a demo stage"


@pytest.mark.xdist_group("kernels")
def test_chapters():
    out = subprocess.run(
        [WORKBENCH, "test", *map(str, CHAPTERS), "--workers", "2", "-p", "smoke=true", "-p", "epochs=1",
         "--junit-xml", str(RESULTS / "notebooks.xml"), "-o", str(RESULTS / "notebooks")],
        capture_output=True, text=True, cwd=ROOT, timeout=1200,
    )
    print(out.stdout)
    assert out.returncode == 0, out.stderr or out.stdout
    suite = ElementTree.parse(RESULTS / "notebooks.xml").getroot()
    assert (suite.get("tests"), suite.get("failures")) == (str(len(CHAPTERS)), "0")


@pytest.mark.xdist_group("kernels")
def test_demo_pipeline():
    runs = run_sequence(DEMO, RESULTS / "demo", {"smoke": True})
    failed = [r for r in runs if not r.ok]
    if failed:
        pytest.fail(failed[0].describe_error(), pytrace=False)
    explore, train, export = (r.metrics for r in runs)
    assert explore["rows"] == 1797 and explore["classes"] == 10 and Path(explore["report"]).exists()
    assert export["reloaded_accuracy"] == train["accuracy"]
    assert Path(export["bundle"], "metadata.json").exists()
    assert all(Path(r.html).exists() for r in runs)
    page = Path(runs[0].html).read_text()  # the executed explore stage shows the static report
    assert "Overview" in page and "Images per class" in page and page.count("data:image/png;base64") >= 60

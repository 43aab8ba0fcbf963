"""The notebooks in nbs/ are the project's tests, executed by the same runner users run: `workbench test`.

Each chapter runs in its own kernel, two at a time, with smoke values offered to the notebooks that declare them;
the stages of the pipelines beside them (nbs/pipelines/demo.yaml, retrain.yaml) run as their pipelines, as `workbench test nbs` finds them.
A failure prints the notebook, the cell, its first line and the exception; executed notebooks are kept under
test-results/notebooks/ and the JUnit report at test-results/notebooks.xml. The demo pipeline also runs in a test of
its own, which checks what its stages recorded and that a second run is all cached.
"""
import shutil
import subprocess
from xml.etree import ElementTree
from pathlib import Path

import numpy as np
import pytest

from conftest import RESULTS, ROOT, workbench
from workbench.export import load
from workbench.pipeline import Pipeline
from workbench.runs import runs as runs_table

CHAPTERS = sorted((ROOT / "nbs").glob("*.ipynb"))
DEMO = Pipeline.from_yaml(ROOT / "nbs" / "pipelines" / "demo.yaml")
STAGES = {s.notebook.resolve() for p in sorted((ROOT / "nbs" / "pipelines").glob("*.yaml")) for s in Pipeline.from_yaml(p).stages.values()}


def test_every_notebook_is_collected():
    on_disk = {p for p in (ROOT / "nbs").rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts}
    assert on_disk == set(CHAPTERS) | STAGES, "a notebook in nbs/ is neither a chapter nor a stage of a pipeline beside it"


def _git_status() -> set:
    out = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=ROOT, capture_output=True, text=True)
    return set(out.stdout.splitlines()) if out.returncode == 0 else set()


@pytest.mark.xdist_group("kernels")
def test_readme_test_command_on_nbs():
    "The README's own command, as a newcomer types it: every chapter, and the demo's stages as their pipeline."
    report = RESULTS / "notebooks.xml"
    report.unlink(missing_ok=True)
    before = _git_status()
    out = workbench("test", "nbs", "--workers", "2", "--junit-xml", report, "-p", "smoke=true", "-p", "epochs=1",
                    "-o", RESULTS / "notebooks", cwd=ROOT, timeout=1200)
    print(out.stdout)
    failures = [f.text for f in ElementTree.parse(report).getroot().iter("failure")] if report.exists() else []
    assert out.returncode == 0, "\n\n".join(failures) or out.stderr[-3000:] or out.stdout  # kernels' stderr comes first
    suite = ElementTree.parse(report).getroot()
    assert (suite.get("tests"), suite.get("failures")) == (str(len(CHAPTERS) + len(STAGES)), "0")
    assert _git_status() == before, "workbench test wrote into the repository"


@pytest.mark.xdist_group("kernels")
def test_demo_pipeline():
    out = RESULTS / "demo"
    shutil.rmtree(out, ignore_errors=True)
    result = DEMO.run({"smoke": True}, out_dir=out, workers=2, verbose=False, lock=False)
    if not result.ok:
        pytest.fail(result.failed[0].describe_error(), pytrace=False)
    runs = result.runs
    assert set(runs) == {"explore", "cnn", "baseline", "export", "evaluate", "serve", "loop"}
    assert runs["explore"].metrics["rows"] == 1797 and runs["explore"].metrics["classes"] == 10
    assert runs["evaluate"].metrics["reloaded_accuracy"] == runs["cnn"].metrics["accuracy"]
    assert runs["evaluate"].metrics["baseline_reloaded_accuracy"] == runs["baseline"].metrics["accuracy"]
    assert abs(runs["evaluate"].metrics["cnn_accuracy"] - runs["cnn"].metrics["accuracy"]) < 1e-4  # evaluate() on the bundle
    assert runs["evaluate"].metrics["cnn_accuracy_low"] < runs["evaluate"].metrics["cnn_accuracy"] < runs["evaluate"].metrics["cnn_accuracy_high"]
    assert "cnn_accuracy_difference" in runs["evaluate"].metrics and isinstance(runs["evaluate"].metrics["cnn_fair"], bool)
    assert runs["evaluate"].metrics["test_drift"] is False and runs["evaluate"].metrics["faded_drift"] is True  # monitor()
    assert runs["serve"].metrics["served_accuracy"] == runs["cnn"].metrics["accuracy"]  # over HTTP, from the bundle
    from workbench.gate import decisions
    from workbench.registry import lineage, models

    registered = models()  # the export stage registered both bundles, with the run that made them; the loop's retraining a third
    assert set(registered["name"]) == {"digits-cnn", "digits-baseline"} and set(registered.loc[registered["version"] == 1, "run_id"]) == {runs["export"].id}
    loop = runs["loop"].metrics  # served, drifted, retrained, gated, promoted, swapped: the server answered from the new version
    assert (loop["champion_version"], loop["promoted_version"]) == (1, 2) and loop["faded_accuracy_after"] > loop["faded_accuracy_before"]
    retrained = registered[(registered["name"] == "digits-baseline") & (registered["version"] == 2)]
    assert "production" in retrained["aliases"].iloc[0] and decisions("digits-baseline")["promoted"].tolist() == [True]
    steps = lineage("digits-cnn", runs["export"].metrics["cnn_version"]).steps
    assert [s["stage"] for s in steps[:3]] == ["export", "cnn", "explore"] and len(steps[2]["data"]["data_fingerprint"]) == 64
    assert runs["serve"].metrics["baseline_served_accuracy"] == runs["baseline"].metrics["accuracy"]
    assert (out / "cnn-bundle" / "metadata.json").exists() and (out / "baseline-bundle" / "model.skops").exists()
    assert all(Path(r.html).exists() for r in runs.values())
    page = Path(runs["explore"].html).read_text()  # the executed explore stage shows the static report
    assert "Overview" in page and "Images per class" in page and page.count("data:image/png;base64") >= 60

    recorded = len(runs_table())
    again = DEMO.run({"smoke": True}, out_dir=out, workers=2, verbose=False, lock=False)
    assert [r.status for r in again.runs.values()] == ["cached"] * 7, again
    assert len(runs_table()) == recorded  # no notebook ran again
    assert again.runs["evaluate"].metrics == runs["evaluate"].metrics

    # the export stage run again into the same folder (overwrite=True): every registered version stays byte for byte
    from workbench.core import file_sha256
    from workbench.registry import model_version
    from workbench.run import run_notebook

    def kept(name, version):
        return {p.name: file_sha256(p) for p in sorted(Path(model_version(name, version).path).iterdir())}

    before = {(n, v): kept(n, v) for n, v in [("digits-cnn", 1), ("digits-baseline", 1), ("digits-baseline", 2)]}
    exported = run_notebook(ROOT / "nbs" / "pipelines" / "export.ipynb", runs["export"].params, out_dir=out / "export-again", html=False)
    assert exported.ok and exported.metrics["cnn_version"] == 2, exported.error
    assert kept("digits-cnn", 2) != before[("digits-cnn", 1)]  # a new version of new files...
    assert {key: kept(*key) for key in before} == before  # ...and the old ones as they were registered
    assert load("models:/digits-cnn/1").predict(np.zeros((1, 1, 8, 8), np.float32)).shape == (1, 10)

    # another seed, into the same folder: every stage runs again, and the loop learns from this run's traffic alone
    other = DEMO.run({"smoke": True, "seed": 1}, out_dir=out, workers=2, verbose=False, lock=False)
    if not other.ok:
        pytest.fail(other.failed[0].describe_error(), pytrace=False)
    seeded = other.runs["loop"].metrics
    assert seeded["promoted_version"] == seeded["champion_version"] + 1 and seeded["faded_accuracy_after"] > seeded["faded_accuracy_before"]

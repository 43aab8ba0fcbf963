"""Every notebook in nbs/ executed by papermill in its own kernel, through workbench's own runner.

pytest-xdist spreads them across cores. Smoke values are injected into the notebooks that declare them in their
`parameters` cell. A notebook whose metadata says {"workbench": {"requires": "gpu"}} is skipped without a GPU.
Executed notebooks are kept under test-results/ so a failure can be opened and read.
"""
import json
from pathlib import Path

import pytest

from conftest import RESULTS, ROOT
from workbench.pipeline import params, run_notebook, run_sequence

SMOKE = {"smoke": True, "epochs": 1}
CHAPTERS = sorted((ROOT / "nbs").glob("*.ipynb"))
DEMO = [ROOT / "nbs" / "pipelines" / f"{stage}.ipynb" for stage in ("explore", "train", "export")]


def _skip_reason(nb: Path):
    requires = json.loads(nb.read_text()).get("metadata", {}).get("workbench", {}).get("requires")
    if requires == "gpu":
        import torch

        if not torch.cuda.is_available():
            return "needs a GPU; none is present"
    return None


def test_every_notebook_is_collected():
    on_disk = {p for p in (ROOT / "nbs").rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts}
    assert on_disk == set(CHAPTERS) | set(DEMO), "a notebook in nbs/ is neither a chapter nor a demo stage"


@pytest.mark.parametrize("nb", CHAPTERS, ids=lambda p: p.name)
def test_notebook(nb: Path):
    reason = _skip_reason(nb)
    if reason:
        pytest.skip(reason)
    declared = params(nb)
    run = run_notebook(nb, {k: v for k, v in SMOKE.items() if k in declared}, out_dir=RESULTS / nb.stem, html=False)
    if not run.ok:
        pytest.fail(run.describe_error(), pytrace=False)


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

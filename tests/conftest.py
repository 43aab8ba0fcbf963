from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "test-results"  # executed notebooks are kept here for inspection (git-ignored)


@pytest.fixture(autouse=True)
def run_store(tmp_path, monkeypatch):
    "Each test records its runs in its own store, never the project's runs/runs.db."
    path = tmp_path / "runs.db"
    monkeypatch.setenv("WORKBENCH_RUNS_DB", str(path))
    return path

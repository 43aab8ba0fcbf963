from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "test-results"  # executed notebooks are kept here for inspection (git-ignored)


@pytest.fixture
def root() -> Path:
    return ROOT

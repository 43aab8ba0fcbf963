import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

from servers import PG_PASSWORD, S3_CREDENTIALS, new_bucket, new_database, postgres_bin, start_postgres, start_s3
from workbench.notebooks import make_notebook

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "test-results"  # executed notebooks are kept here for inspection (git-ignored)
WORKBENCH = str(Path(sys.executable).parent / "workbench")  # the console script of the installed package


def workbench(*args, cwd=None, timeout=300, env=None) -> subprocess.CompletedProcess:
    "Run the `workbench` command as a shell would (in `env` where given); its output captured as text."
    return subprocess.run([WORKBENCH, *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=timeout, env=env)


@pytest.fixture(scope="session")
def postgres():
    "A PostgreSQL server of this machine's packages, for this test process, on loopback; its base URL (no password: it comes from $PGPASSWORD)."
    if postgres_bin() is None:
        pytest.skip("no PostgreSQL server on this machine: install Debian's postgresql (make test does) to run the PostgreSQL tests")
    url, stop = start_postgres()
    try:
        yield url
    finally:
        stop()


@pytest.fixture(scope="session")
def s3(tmp_path_factory):
    "A real S3 API server on loopback for this test process (moto's server mode: the S3 endpoint available here); its URL."
    url, stop = start_s3(log=tmp_path_factory.mktemp("s3") / "log")
    try:
        yield url
    finally:
        stop()


def pytest_generate_tests(metafunc):
    "A module or test marked `both_stores` runs once on a SQLite file (artifacts in a folder) and once as a team would: a PostgreSQL database, artifacts on S3."
    chosen = any("run_store" in m.args[0] for m in metafunc.definition.iter_markers("parametrize"))  # a test that names its store
    if metafunc.definition.get_closest_marker("both_stores") and "run_store" in metafunc.fixturenames and not chosen:
        metafunc.parametrize("run_store", ["sqlite", "postgresql"], indirect=True)


@pytest.fixture(autouse=True)
def run_store(request, tmp_path, monkeypatch):
    "Each test records its runs in its own store, never the project's runs/runs.db: a SQLite file, or (both_stores) a new PostgreSQL database and S3 bucket."
    monkeypatch.delenv("WORKBENCH_RUNS_DB", raising=False)
    monkeypatch.setenv("WORKBENCH_ARTIFACT_CACHE", str(tmp_path / "artifact-cache"))  # never the user's ~/.cache
    if getattr(request, "param", "sqlite") == "postgresql":
        location = new_database(request.getfixturevalue("postgres"))
        monkeypatch.setenv("PGPASSWORD", PG_PASSWORD)
        endpoint = request.getfixturevalue("s3")
        for key, value in {**S3_CREDENTIALS, "AWS_ENDPOINT_URL": endpoint, "WORKBENCH_ARTIFACTS": new_bucket(endpoint)}.items():
            monkeypatch.setenv(key, value)
    else:
        location = tmp_path / "runs.db"
    monkeypatch.setenv("WORKBENCH_STORE", str(location))
    return location


def write_notebook(path: Path, *sources: str, parameters: str | None = None) -> Path:
    "A notebook of code cells `sources`, after a cell tagged `parameters` when `parameters` is given."
    nbformat.write(make_notebook(*sources, params_cell=parameters), path)
    return path


def start_until(cmd, flag: Path, timeout: float = 120, **popen) -> tuple:
    "Start `cmd`, wait until the notebook it runs writes its kernel's pid to `flag`; the process and that pid."
    proc = subprocess.Popen(list(map(str, cmd)), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)
    deadline = time.monotonic() + timeout
    while not flag.exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.2)
    assert flag.exists(), proc.communicate()
    time.sleep(0.5)  # the kernel is inside its cell now
    return proc, int(flag.read_text())


def alive(pid: int) -> bool:
    "Whether process `pid` runs (a zombie does not)."
    try:
        return Path(f"/proc/{pid}/status").read_text().split("State:")[1].split()[0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


def pipeline_folder(root: Path) -> Path:
    "A project as a user keeps it: two notebooks that are a pipeline's stages, one that stands alone, and the YAML."
    write_notebook(root / "prepare.ipynb", "from pathlib import Path", "Path(run_dir, 'n.txt').write_text(str(n))",
                   parameters="run_dir = '.'\nn = 2")
    write_notebook(root / "use.ipynb", "from pathlib import Path\nfrom workbench.runs import record",
                   "record('twice', 2 * int(Path(data).read_text()))", parameters="data = ''")
    write_notebook(root / "alone.ipynb", "x = 1")
    (root / "flow.yaml").write_text("stages:\n  prepare: {notebook: prepare.ipynb, outputs: {data: n.txt}}\n"
                                    "  use: {notebook: use.ipynb, params: {data: '${prepare.outputs.data}'}}\n")
    return root


def assert_same_answers(got, want, rtol: float = 1e-4, atol: float = 1e-3):
    "What a loaded bundle answers against what the model answers: labels exactly, values within the tolerance."
    import numpy as np

    if np.asarray(want).dtype.kind in "iub":
        np.testing.assert_array_equal(got, want)
    else:
        np.testing.assert_allclose(got, want, rtol=rtol, atol=atol)


def tamper_kept(uri: str, name: str):
    "Cut the last byte off file `name` of the version `uri` where it is kept: in the artifact folder, or in the bucket (this machine's cache dropped)."
    import os
    import shutil

    import fsspec

    from workbench.artifacts import artifacts_root, is_url
    from workbench.bundles import _resolve
    from workbench.core import file_sha256
    from workbench.store import RunStore

    here, root = _resolve(uri)[0] / name, artifacts_root(RunStore())
    cut = here.read_bytes()[:-1]
    if is_url(root):
        digest = file_sha256(here)
        with fsspec.open(f"{root}/blobs/{digest[:2]}/{digest}", "wb") as f:
            f.write(cut)
        shutil.rmtree(os.environ["WORKBENCH_ARTIFACT_CACHE"])
    else:
        os.chmod(here, 0o644)
        here.write_bytes(cut)

import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat
import pytest

from workbench.notebooks import make_notebook

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "test-results"  # executed notebooks are kept here for inspection (git-ignored)
WORKBENCH = str(Path(sys.executable).parent / "workbench")  # the console script of the installed package


def workbench(*args, cwd=None, timeout=300) -> subprocess.CompletedProcess:
    "Run the `workbench` command as a shell would; its output captured as text."
    return subprocess.run([WORKBENCH, *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=timeout)


PG_PASSWORD = "a-password-no-log-may-show"  # the tests' role has one, so that a test can look for it where it must not be


def _postgres_bin() -> Path | None:
    "The folder of this machine's PostgreSQL server programs, or None."
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    path = found[-1] if found else shutil.which("initdb")
    return Path(path).parent if path else None


@pytest.fixture(scope="session")
def postgres(tmp_path_factory):
    "A PostgreSQL server of this machine's packages, for this test process: initdb in a temporary folder (run by the postgres user where we are root), on loopback; its base URL (no password: it comes from $PGPASSWORD)."
    import getpass
    import os
    import socket

    bin_dir = _postgres_bin()
    if bin_dir is None:
        pytest.skip("no PostgreSQL server on this machine: install Debian's postgresql (make test does) to run the PostgreSQL tests")
    data = Path(tempfile.mkdtemp(prefix="workbench-pg-"))
    as_user = ["runuser", "-u", "postgres", "--"] if os.getuid() == 0 else []
    if as_user:
        subprocess.run(["chown", "-R", "postgres", str(data)], check=True)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    secret = data / "password"
    secret.write_text(PG_PASSWORD)
    user = "postgres" if as_user else getpass.getuser()
    subprocess.run([*as_user, bin_dir / "initdb", "-D", data / "db", "-U", user, "--pwfile", secret, "--auth-host=scram-sha-256",
                    "--auth-local=trust", "-E", "UTF8"], check=True, capture_output=True)
    subprocess.run([*as_user, bin_dir / "pg_ctl", "-D", data / "db", "-l", data / "log", "-w", "-o",
                    f"-p {port} -k {data} -c listen_addresses=127.0.0.1 -c max_connections=200 -c fsync=off", "start"],
                   check=True, capture_output=True)
    try:
        yield f"postgresql://{user}@127.0.0.1:{port}"
    finally:
        subprocess.run([*as_user, bin_dir / "pg_ctl", "-D", data / "db", "-m", "immediate", "stop"], capture_output=True)
        shutil.rmtree(data, ignore_errors=True)


def new_database(base: str) -> str:
    "A new, empty database on the tests' server: its URL."
    import uuid

    import psycopg

    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(f"{base}/postgres", password=PG_PASSWORD, autocommit=True) as db:
        db.execute(f"CREATE DATABASE {name}")
    return f"{base}/{name}"


def pytest_generate_tests(metafunc):
    "A module or test marked `both_stores` runs once on a SQLite file and once on a PostgreSQL database."
    chosen = any("run_store" in m.args[0] for m in metafunc.definition.iter_markers("parametrize"))  # a test that names its store
    if metafunc.definition.get_closest_marker("both_stores") and "run_store" in metafunc.fixturenames and not chosen:
        metafunc.parametrize("run_store", ["sqlite", "postgresql"], indirect=True)


@pytest.fixture(autouse=True)
def run_store(request, tmp_path, monkeypatch):
    "Each test records its runs in its own store, never the project's runs/runs.db: a SQLite file, or (both_stores) a new PostgreSQL database."
    monkeypatch.delenv("WORKBENCH_RUNS_DB", raising=False)
    if getattr(request, "param", "sqlite") == "postgresql":
        location = new_database(request.getfixturevalue("postgres"))
        monkeypatch.setenv("PGPASSWORD", PG_PASSWORD)
        monkeypatch.setenv("WORKBENCH_ARTIFACTS", str(tmp_path / "artifacts"))  # beside no file: the tests' own folder
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

"""The servers a team's workbench talks to, started for tests and benchmarks from this machine's packages: a PostgreSQL
server (initdb in a temporary folder, as the postgres user where we are root) and an S3 API server (moto's server
mode, the S3 endpoint available here). Each can be started inside a network namespace (`prefix`, `ip netns exec NS`)
and listen on that host's address. And an MLflow tracking server (`mlflow server`: SQLite behind it, artifacts served
through it), for the export's test."""
import getpass
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

PG_PASSWORD = "a-password-no-log-may-show"  # the role has one, so that a test can look for it where it must not be
S3_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "workbench-tests", "AWS_SECRET_ACCESS_KEY": "a-secret-no-log-may-show", "AWS_DEFAULT_REGION": "us-east-1"}


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def postgres_bin() -> Path | None:
    "The folder of this machine's PostgreSQL server programs, or None."
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    path = found[-1] if found else shutil.which("initdb")
    return Path(path).parent if path else None


def start_postgres(host: str = "127.0.0.1", port: int | None = None, allow: str | None = None, prefix: tuple = ()) -> tuple:
    "(base URL without a password, stop) of a new PostgreSQL server on `host`; clients from the network `allow` too (CIDR)."
    bin_dir = postgres_bin()
    data = Path(tempfile.mkdtemp(prefix="workbench-pg-"))
    as_user = ["runuser", "-u", "postgres", "--"] if os.getuid() == 0 else []
    if as_user:
        subprocess.run(["chown", "-R", "postgres", str(data)], check=True)
    port, user, secret = port or free_port(host), ("postgres" if as_user else getpass.getuser()), data / "password"
    secret.write_text(PG_PASSWORD)
    subprocess.run([*as_user, bin_dir / "initdb", "-D", data / "db", "-U", user, "--pwfile", secret, "--auth-host=scram-sha-256",
                    "--auth-local=trust", "-E", "UTF8"], check=True, capture_output=True)
    if allow:
        with open(data / "db" / "pg_hba.conf", "a") as hba:
            hba.write(f"host all all {allow} scram-sha-256\n")
    subprocess.run([*prefix, *as_user, bin_dir / "pg_ctl", "-D", data / "db", "-l", data / "log", "-w", "-o",
                    f"-p {port} -k {data} -c listen_addresses={host} -c max_connections=200 -c fsync=off", "start"],
                   check=True, capture_output=True)

    def stop():
        subprocess.run([*prefix, *as_user, bin_dir / "pg_ctl", "-D", data / "db", "-m", "immediate", "stop"], capture_output=True)
        shutil.rmtree(data, ignore_errors=True)
    return f"postgresql://{user}@{host}:{port}", stop


def new_database(base: str) -> str:
    "A new, empty database on the server at `base`: its URL."
    import psycopg

    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(f"{base}/postgres", password=PG_PASSWORD, autocommit=True) as db:
        db.execute(f"CREATE DATABASE {name}")
    return f"{base}/{name}"


def _wait_until_up(server: subprocess.Popen, url: str, seconds: float, why):
    "Wait until `url` answers; a server that exits or stays silent for `seconds` is killed and `why()` raised."
    deadline = time.monotonic() + seconds
    while True:
        try:
            urllib.request.urlopen(url, timeout=1).close()
            return
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                server.kill()
                raise RuntimeError(why())
            time.sleep(0.2)


def start_s3(host: str = "127.0.0.1", port: int | None = None, prefix: tuple = (), log: Path | None = None) -> tuple:
    "(endpoint URL, stop) of a new S3 API server on `host`."
    port = port or free_port(host)
    out = open(log, "w") if log else subprocess.DEVNULL
    server = subprocess.Popen([*prefix, sys.executable, "-m", "moto.server", "-H", host, "-p", str(port)],
                              stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **S3_CREDENTIALS})
    url = f"http://{host}:{port}"
    _wait_until_up(server, url + "/moto-api/", 60, lambda: f"the S3 server did not start: {log.read_text() if log else ''}")

    def stop():
        server.terminate()
        server.wait(10)
    return url, stop


def new_bucket(endpoint: str) -> str:
    "A new, empty bucket on the S3 server at `endpoint`: its s3:// URL, with a prefix (as a team would give one)."
    import boto3

    name = f"t-{uuid.uuid4().hex[:12]}"
    keys = {"aws_access_key_id": S3_CREDENTIALS["AWS_ACCESS_KEY_ID"], "aws_secret_access_key": S3_CREDENTIALS["AWS_SECRET_ACCESS_KEY"]}
    boto3.client("s3", endpoint_url=endpoint, region_name=S3_CREDENTIALS["AWS_DEFAULT_REGION"], **keys).create_bucket(Bucket=name)
    return f"s3://{name}/team/artifacts"


def start_mlflow(folder: Path) -> tuple:
    "(tracking URL, stop) of a new `mlflow server` on loopback: its runs and registry in SQLite, its artifacts in `folder` served through it."
    port, log = free_port(), open(folder / "mlflow-server.log", "w")
    server = subprocess.Popen([Path(sys.executable).parent / "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
                               "--backend-store-uri", f"sqlite:///{folder / 'mlflow.db'}", "--artifacts-destination", str(folder / "artifacts")],
                              cwd=folder, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    _wait_until_up(server, url + "/health", 120, lambda: f"mlflow server did not start: {(folder / 'mlflow-server.log').read_text()[-2000:]}")

    def stop():
        os.killpg(server.pid, 15)
        server.wait(20)
    return url, stop

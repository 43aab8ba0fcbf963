"""The store on PostgreSQL against SQLite, in the same run: what a team pays for sharing it.

1. Recording throughput: 4 writer processes, each recording 500 values (with a step) into its own run; values/s.
2. `models:/NAME@ALIAS` resolution: the store's part of a load (`RunStore.version`), median over 500, in ms.

A PostgreSQL server of this machine's packages is started for the run (initdb in a temporary folder, as the postgres
user where this runs as root) and stopped at the end. Prints both figures and PostgreSQL ÷ SQLite.
Run: `make bench` or `.venv/bin/python bench/store.py`.
"""
import multiprocessing
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from servers import PG_PASSWORD, new_database, postgres_bin, start_postgres  # noqa: E402  the tests' own servers

WRITERS, VALUES, LOOKUPS = 4, 500, 500


def _write(location: str, i: int) -> float:
    from workbench.store import RunStore

    store = RunStore(location)
    store.start(f"bench-{i}", "nb.ipynb", {})
    started = time.perf_counter()
    for k in range(VALUES):
        store.record(f"bench-{i}", "loss", 1.0 / (k + 1), step=k)
    return time.perf_counter() - started


def throughput(location: str) -> float:
    "Values recorded per second by WRITERS processes at once."
    from workbench.store import RunStore

    RunStore(location)  # made before the clock starts
    with multiprocessing.get_context("spawn").Pool(WRITERS) as pool:
        started = time.perf_counter()
        pool.starmap(_write, [(location, i) for i in range(WRITERS)])
        return WRITERS * VALUES / (time.perf_counter() - started)


def resolution(location: str) -> float:
    "Median milliseconds of the store's part of resolving models:/bench@production."
    from workbench.store import RunStore

    store = RunStore(location)
    for i in range(5):
        store.add_version("bench", f"/m/{i}", f"d{i}")
    store.set_alias("bench", "production", 3)
    times = []
    for _ in range(LOOKUPS):
        started = time.perf_counter()
        store.version("bench", "production")
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def main():
    if postgres_bin() is None:
        sys.exit("bench/store.py needs a PostgreSQL server: install Debian's postgresql (make test does)")
    work = Path(tempfile.mkdtemp(prefix="workbench-bench-store-"))
    base, stop = start_postgres()
    os.environ["PGPASSWORD"] = PG_PASSWORD
    try:
        url = new_database(base)
        sqlite = str(work / "runs.db")
        rows = [("recording, values/s from 4 writers", throughput(sqlite), throughput(url)),
                ("models:/ resolution, median ms", resolution(sqlite), resolution(url))]
        for what, lite, pg in rows:
            print(f"{what:<40} SQLite {lite:9.2f}   PostgreSQL {pg:9.2f}   PostgreSQL/SQLite = {pg / lite:.2f}x")
    finally:
        stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

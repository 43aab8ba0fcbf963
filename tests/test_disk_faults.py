"""Disks and stores as the world hands them over: a read-only mount, a file where a folder should be, run stores that
are damaged in the ways disks and copies damage them. Every command ends in one line that says what to do, exit 2,
no traceback; nothing is written; a damaged store is diagnosed read-only and left byte for byte as it was."""
import hashlib
import os
import sqlite3
import subprocess

import pytest
import torch
from torch import nn

from conftest import workbench, write_notebook
from workbench.export import export


@pytest.fixture
def project(tmp_path):
    "A notebook, a pipeline of it, a bundle, and a read-only mount (a tmpfs mounted ro) that holds a store and a bundle."
    write_notebook(tmp_path / "nb.ipynb", "x = 1", parameters="n = 1")
    (tmp_path / "p.yaml").write_text("stages:\n  one: {notebook: nb.ipynb}\n")
    export(nn.Sequential(nn.Linear(4, 2)).eval(), torch.randn(4, 4), tmp_path / "bundle", formats=["onnx"])
    (tmp_path / "a-file").write_text("in the way")
    (tmp_path / "outs").mkdir()
    ro = tmp_path / "ro"
    ro.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(ro)], capture_output=True).returncode == 0
    if mounted:
        workbench("run", tmp_path / "nb.ipynb", "-o", tmp_path / "out", "--store", ro / "runs.db")
        subprocess.run(["cp", "-r", str(tmp_path / "bundle"), str(ro / "bundle")], check=True)
        mounted = subprocess.run(["mount", "-o", "remount,ro", str(ro)], capture_output=True).returncode == 0
    yield tmp_path, ro if mounted else None
    if mounted:
        subprocess.run(["umount", "-l", str(ro)], capture_output=True)


COMMANDS = {  # name: (the command's words, with {t} the project and {ro} the read-only mount; words the error holds)
    "run into a read-only folder": (["run", "{t}/nb.ipynb", "-o", "{ro}/out"], "cannot write the output folder"),
    "a pipeline into a read-only folder": (["run", "{t}/p.yaml", "-o", "{ro}/out", "--no-lock"], "cannot write the output folder"),
    "test into a read-only folder": (["test", "{t}/nb.ipynb", "-o", "{ro}/out"], "cannot write the output folder"),
    "sweep into a read-only folder": (["sweep", "{t}/nb.ipynb", "-p", "n=1,2", "-o", "{ro}/out"], "cannot write the output folder"),
    "run into a file": (["run", "{t}/nb.ipynb", "-o", "{t}/a-file/out"], "Not a directory"),
    "a pipeline into a file": (["run", "{t}/p.yaml", "-o", "{t}/a-file", "--no-lock"], "cannot write the output folder"),
    "serve logging to a read-only folder": (["serve", "{t}/bundle", "--port", "0", "--log-requests", "{ro}/traffic"], "cannot write the traffic log's folder"),
    "deploy into a read-only folder": (["deploy", "{t}/bundle", "--target", "docker", "--out", "{ro}/recipe"], "{ro}"),
    "a new store on a read-only disk": (["runs", "--store", "{ro}/new.db"], "run store"),
    "a store on a read-only disk, written": (["run", "{t}/nb.ipynb", "-o", "{t}/outs", "--store", "{ro}/runs.db"], "run store"),
    "a store that is a folder": (["runs", "--store", "{t}"], "is a folder"),
}


@pytest.mark.parametrize("name", COMMANDS)
def test_a_folder_that_cannot_be_written_is_one_line_and_exit_2(project, name):
    root, ro = project
    words, expected = COMMANDS[name]
    if ro is None and any("{ro}" in w for w in words + [expected]):
        pytest.skip("this machine does not let the tests mount a read-only file system")
    fill = lambda w: w.format(t=root, ro=ro)
    before = sorted(p.name for p in root.iterdir())
    out = workbench(*map(fill, words), timeout=120)
    assert out.returncode == 2, (out.returncode, out.stdout[-1500:], out.stderr[-1500:])
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and fill(expected) in lines[0] and "Traceback" not in out.stderr, out.stderr
    assert sorted(p.name for p in root.iterdir()) == before and not any((root / "outs").iterdir())  # nothing written


def test_a_bundle_on_a_read_only_disk_is_checked_and_served_as_any(project):
    root, ro = project
    if ro is None:
        pytest.skip("this machine does not let the tests mount a read-only file system")
    out = workbench("check", ro / "bundle")
    assert out.returncode == 0 and "onnx: ok" in out.stdout, out.stderr


def _store(path, wal: bool):
    db = sqlite3.connect(path)
    if wal:
        db.execute("PRAGMA journal_mode=WAL")
    db.execute("CREATE TABLE notes (x TEXT)")
    db.executemany("INSERT INTO notes VALUES (?)", [("x" * 500,)] * 2000)
    db.commit()
    db.close()
    return path


def _rewrite(path, change):
    data = bytearray(path.read_bytes())
    path.write_bytes(change(data))


DAMAGE = {  # how a store is damaged
    "text, not a database": lambda p: p.write_text("my notes " * 200),
    "random bytes": lambda p: p.write_bytes(os.urandom(50_000)),
    "pages overwritten": lambda p: _rewrite(_store(p, False), lambda d: d[:4096] + os.urandom(4096 * 20) + d[4096 * 21:]),
    "cut in half": lambda p: _rewrite(_store(p, False), lambda d: d[:len(d) // 2]),
    "in WAL mode, cut in half": lambda p: _rewrite(_store(p, True), lambda d: d[:len(d) // 2]),
    "a page size that cannot be": lambda p: _rewrite(_store(p, False), lambda d: d[:16] + b"\x00\x03" + d[18:]),
    "only the header": lambda p: _rewrite(_store(p, False), lambda d: d[:100]),
}


@pytest.mark.parametrize("damage", DAMAGE)
@pytest.mark.parametrize("command", [["runs"], ["models"], ["run", "{nb}", "-o", "{out}"]], ids=["runs", "models", "run"])
def test_a_damaged_store_is_diagnosed_read_only_and_left_as_it_was(tmp_path, damage, command):
    path = tmp_path / "runs.db"
    DAMAGE[damage](path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    write_notebook(tmp_path / "nb.ipynb", "x = 1")
    out = workbench(*[w.format(nb=tmp_path / "nb.ipynb", out=tmp_path / "out") for w in command], "--store", path)
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert out.returncode == 2 and len(lines) == 1 and "left as it is" in lines[0] and "Traceback" not in out.stderr, out.stderr
    assert hashlib.sha256(path.read_bytes()).hexdigest() == digest  # not a byte changed
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("runs.db")) == ["runs.db"]  # no -wal, no -shm

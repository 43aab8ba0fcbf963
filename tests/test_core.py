"""Faults the notebooks cannot show: a process killed in the middle of a write."""
import os
import signal
import subprocess
import sys
import textwrap


def test_atomic_write_survives_kill(tmp_path):
    target = tmp_path / "checkpoint.json"
    target.write_text('{"epoch": 1}')
    writer = textwrap.dedent(f"""
        import os, signal
        from workbench.core import atomic_write
        with atomic_write({str(target)!r}) as f:
            f.write('{{"epoch": 2, "weights": [')
            f.flush()
            os.kill(os.getpid(), signal.SIGKILL)
    """)
    proc = subprocess.run([sys.executable, "-c", writer])
    assert proc.returncode == -signal.SIGKILL
    assert target.read_text() == '{"epoch": 1}'  # the old file is whole
    leftovers = [p.name for p in tmp_path.iterdir() if p != target]
    assert all(name.startswith(".checkpoint.json.") and name.endswith(".tmp") for name in leftovers)


def test_atomic_write_keeps_permissions(tmp_path):
    from workbench.core import atomic_write

    target = tmp_path / "script.sh"
    target.write_text("echo 1")
    os.chmod(target, 0o755)
    with atomic_write(target) as f:
        f.write("echo 2")
    assert target.stat().st_mode & 0o777 == 0o755 and target.read_text() == "echo 2"

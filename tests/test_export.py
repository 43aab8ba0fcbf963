"""Export faults: a format whose numbers differ, a process killed mid-export, the command-line check."""
import json
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from conftest import workbench

from workbench import export as ex
from workbench import formats
from workbench.train import synth_mlp


def test_parity_failure_names_the_format(tmp_path, monkeypatch):
    real = formats._write_onnx_torch

    def skewed(model, sample, folder):  # an ONNX file whose numbers differ from the model's
        wrong = synth_mlp(seed=1).eval()
        return real(wrong, sample, folder)

    monkeypatch.setitem(formats._WRITERS, "onnx", skewed)
    with pytest.raises(ex.ExportError, match=r"onnx disagrees with the original model: predict: max abs diff"):
        ex.export(synth_mlp(), torch.randn(4, 8), tmp_path / "bundle")
    assert not (tmp_path / "bundle").exists() and not list(tmp_path.iterdir())  # nothing half-written is left
    bundle = ex.export(synth_mlp(), torch.randn(4, 8), tmp_path / "bundle", allow_partial=True)
    assert set(bundle.files) == {"model.safetensors", "model.pt2"} and "onnx" in bundle.metadata["failed"]


def test_kill_during_export_leaves_no_bundle(tmp_path):
    code = textwrap.dedent(f"""
        import os, signal, torch
        from workbench import export as ex, formats
        from workbench.train import synth_mlp
        real = formats._write_pt2
        def dying(model, sample, folder):
            real(model, sample, folder)
            os.kill(os.getpid(), signal.SIGKILL)  # after two formats are on disk
        formats._WRITERS["pt2"] = dying
        ex.export(synth_mlp(), torch.randn(4, 8), {str(tmp_path / "bundle")!r})
    """)
    assert subprocess.run([sys.executable, "-c", code]).returncode == -signal.SIGKILL
    assert not (tmp_path / "bundle").exists()  # only a hidden temporary folder remains
    assert [p.name.startswith(".bundle.tmp-") for p in tmp_path.iterdir()] == [True]
    ex.export(synth_mlp(), torch.randn(4, 8), tmp_path / "bundle", formats=["onnx"])  # the next export there clears what the dead one left
    assert [p.name for p in tmp_path.iterdir()] == ["bundle"]


def test_check_command(tmp_path):
    ex.export(synth_mlp(), torch.randn(4, 8), tmp_path / "b", formats=["onnx", "pt2"])
    ok = workbench("check", tmp_path / "b")
    assert ok.returncode == 0 and "onnx: ok" in ok.stdout and "--trust-pt2" in ok.stdout
    trusted = workbench("check", tmp_path / "b", "--trust-pt2")
    assert trusted.returncode == 0 and "pt2: ok" in trusted.stdout
    meta = json.loads((tmp_path / "b" / "metadata.json").read_text())
    expected = np.load(tmp_path / "b" / "expected.npy")
    np.save(tmp_path / "b" / "expected.npy", expected + 1.0)  # the stored outputs no longer match
    bad = workbench("check", tmp_path / "b")
    assert bad.returncode == 2 and "no longer match" in bad.stderr and meta["files"]
    (tmp_path / "b" / "model.onnx").write_bytes(b"tampered")
    tampered = workbench("check", tmp_path / "b")
    assert tampered.returncode == 2 and "changed after export" in tampered.stderr


def test_a_loaded_predictor_outlives_its_folder(tmp_path):
    import shutil

    ex.export(synth_mlp(), torch.randn(4, 8), tmp_path / "b", formats=["onnx", "pt2"])
    predictors = [ex.load(tmp_path / "b", backend=b, trusted=["pt2"]) for b in ("onnx", "pt2")]
    x = np.random.default_rng(0).normal(size=(3, 8)).astype(np.float32)
    before = [p.predict(x) for p in predictors]
    shutil.rmtree(tmp_path / "b")  # deleted (or moved) while loaded: what is in memory keeps answering
    for p, expected in zip(predictors, before):
        np.testing.assert_array_equal(p.predict(x), expected)
    for fn in (ex.load, ex.check):
        with pytest.raises(ex.InputError, match="there is no bundle at .*: the folder does not exist"):
            fn(tmp_path / "b")

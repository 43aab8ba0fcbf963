"""Bundles nobody here wrote: each carries what an attacker or a careless copy would put in one. Loading, checking,
registering or serving it never runs its code nor reads a file outside its folder: each payload would make a marker
folder, the marker never appears, and each bundle gets one line of WorkbenchError that names the file."""
import json
import os
import pickle
import shutil
import zipfile

import numpy as np
import pytest
import torch

from workbench.core import WorkbenchError, file_sha256
from workbench.export import check, export, load
from workbench.registry import register
from workbench.train import synth_mlp


class Payload:
    "Unpickled, it makes the folder `marker`: proof that a file of the bundle ran code."

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.makedirs, (self.marker,))


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    "A torch bundle (safetensors, ONNX, pt2) and a scikit-learn one (ONNX, skops), written once; each case copies one."
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    root = tmp_path_factory.mktemp("good")
    export(synth_mlp(), torch.randn(4, 8), root / "torch")
    X, y = load_iris(return_X_y=True)
    export(LogisticRegression(max_iter=500).fit(X, y), X[:8].astype(np.float32), root / "sklearn")
    return root


def _meta(folder):
    return json.loads((folder / "metadata.json").read_text())


def _write_meta(folder, meta):
    (folder / "metadata.json").write_text(json.dumps(meta))


def _list_only(folder, name, fmt):
    "Make `name` the bundle's one model file, with its true size and sha256 (an attacker recomputes them)."
    meta = _meta(folder)
    entry = {"format": fmt, "size": (folder / name).stat().st_size, "sha256": file_sha256(folder / name), "parity": {"max_abs": 0}}
    meta["files"] = {name: entry}
    _write_meta(folder, meta)


def _relist(folder, name):
    "Record `name`'s new size and sha256 in the metadata, as a forger would."
    meta = _meta(folder)
    meta["files"][name].update(size=(folder / name).stat().st_size, sha256=file_sha256(folder / name))
    _write_meta(folder, meta)


def _pickle_zip(path, marker, member="archive/data.pkl"):
    with zipfile.ZipFile(path, "w") as z:
        z.writestr(member, pickle.dumps(Payload(marker)))


def _pt2_exploit(path, marker):
    """A .pt2 archive that torch.export.load runs: a program of the older layout whose weights are a pickle, which torch
    loads with weights_only=False once the safe load fails (`test_the_pt2_payload_is_real` shows that it does)."""
    import io

    from torch._export.serde.schema import SCHEMA_VERSION
    from torch._export.serde.serialize import serialize

    program = serialize(torch.export.export(torch.nn.Linear(2, 2), (torch.randn(1, 2),)))
    weights = io.BytesIO()
    torch.save(Payload(marker), weights)
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("version", ".".join(map(str, SCHEMA_VERSION)))
        z.writestr("serialized_exported_program.json", program.exported_program)
        z.writestr("serialized_state_dict.pt", weights.getvalue())
        z.writestr("serialized_constants.pt", program.constants)
        z.writestr("serialized_example_inputs.pt", program.example_inputs)


def test_the_pt2_payload_is_real(tmp_path):
    "torch.export.load itself runs the archive's pickle: why workbench loads .pt2 only when it is named trusted."
    _pt2_exploit(tmp_path / "model.pt2", tmp_path / "marker")
    with pytest.raises(Exception):
        torch.export.load(str(tmp_path / "model.pt2"))
    assert (tmp_path / "marker").exists()


# Each case: how a good bundle is made hostile (the folder, the marker its payload would make).
def pt2_pickle_only(b, m):  # the archive's model file is the only one listed
    _pt2_exploit(b / "model.pt2", m)
    _list_only(b, "model.pt2", "pt2")


def pt2_pickle_asked(b, m):
    pt2_pickle_only(b, m)


def pt2_zip_slip(b, m):  # a member that would be extracted outside the folder
    _pickle_zip(b / "model.pt2", m, member="../../../escaped/data.pkl")
    _list_only(b, "model.pt2", "pt2")


def pt2_beside_onnx(b, m):  # a good ONNX file, and the exploit as the .pt2: loading by default never opens it
    _pt2_exploit(b / "model.pt2", m)
    _relist(b, "model.pt2")
    (b / "model.onnx").write_bytes(b"broken")  # so that what is loaded is seen to fail on ONNX, not fall back to pt2
    _relist(b, "model.onnx")


def skops_os_function(b, m):  # a FunctionTransformer calling os.makedirs
    import skops.io as sio
    from sklearn.preprocessing import FunctionTransformer

    sio.dump(FunctionTransformer(os.makedirs, kw_args={"name": str(m)}), b / "model.skops")
    _list_only(b, "model.skops", "skops")


def skops_sklearn_function(b, m):  # a function of scikit-learn's is code too, not a class that holds data
    import skops.io as sio
    from sklearn.preprocessing import FunctionTransformer
    from sklearn.utils.validation import check_array

    sio.dump(FunctionTransformer(check_array), b / "model.skops")
    _list_only(b, "model.skops", "skops")


def skops_is_a_pickle(b, m):
    (b / "model.skops").write_bytes(pickle.dumps(Payload(m)))
    _list_only(b, "model.skops", "skops")


def sample_npy_pickle(b, m):
    np.save(b / "sample.npy", np.array([Payload(m)], dtype=object), allow_pickle=True)


def expected_npy_pickle(b, m):
    np.save(b / "expected.npy", np.array([Payload(m)], dtype=object), allow_pickle=True)


def sample_npz_pickle(b, m):
    (b / "sample.npy").unlink()
    np.savez(b / "sample.npz", **{"input:input": np.array([Payload(m)], dtype=object)}, allow_pickle=True)


def sample_npy_forged_size(b, m):  # 10^12 floats claimed in a few bytes
    from numpy.lib import format as npy

    with open(b / "sample.npy", "wb") as f:
        npy.write_array_header_1_0(f, {"descr": "<f4", "fortran_order": False, "shape": (10**6, 10**6)})
        f.write(b"\0" * 64)


def name_with_dotdot(b, m):
    (b.parent / "outside.onnx").write_bytes((b / "model.onnx").read_bytes())
    meta = _meta(b)
    meta["files"] = {"../outside.onnx": meta["files"]["model.onnx"]}
    _write_meta(b, meta)


def name_absolute(b, m):
    meta = _meta(b)
    meta["files"] = {str((b / "model.onnx").resolve()): meta["files"]["model.onnx"]}
    _write_meta(b, meta)


def name_with_separator(b, m):
    (b / "sub").mkdir()
    shutil.copy(b / "model.onnx", b / "sub" / "model.onnx")
    meta = _meta(b)
    meta["files"] = {"sub/model.onnx": meta["files"]["model.onnx"]}
    _write_meta(b, meta)


def model_symlink_out(b, m):
    shutil.move(b / "model.onnx", b.parent / "elsewhere.onnx")
    os.symlink(b.parent / "elsewhere.onnx", b / "model.onnx")


def sample_symlink_out(b, m):
    shutil.move(b / "sample.npy", b.parent / "secret.npy")
    os.symlink(b.parent / "secret.npy", b / "sample.npy")


def metadata_symlink(b, m):
    shutil.move(b / "metadata.json", b.parent / "meta.json")
    os.symlink(b.parent / "meta.json", b / "metadata.json")


def bundle_is_a_symlink(b, m):
    shutil.move(b, b.parent / "real")
    os.symlink(b.parent / "real", b)


def sparse_2gb_model(b, m):  # claimed as the model, with the small model's recorded size: refused before hashing
    with open(b / "model.onnx", "wb") as f:
        f.truncate(2 * 2**30)


def model_is_a_folder(b, m):
    (b / "model.onnx").unlink()
    (b / "model.onnx").mkdir()


def model_is_a_fifo(b, m):  # opening it would wait forever
    (b / "model.onnx").unlink()
    os.mkfifo(b / "model.onnx")


def onnx_not_protobuf(b, m):
    (b / "model.onnx").write_bytes(b"\x08\x07 not a protobuf at all")
    _relist(b, "model.onnx")


def onnx_external_data(b, m):  # an initializer whose bytes live in a file beside (or above) the bundle
    from onnx import TensorProto, helper

    w = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[8], data_location=TensorProto.EXTERNAL)
    for k, v in (("location", "../secret.bin"), ("offset", "0"), ("length", "32")):
        w.external_data.add(key=k, value=v)
    (b.parent / "secret.bin").write_bytes(b"\0" * 32)
    io = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [None, 8]) for n in ("input", "output")]
    graph = helper.make_graph([helper.make_node("Add", ["input", "w"], ["output"])], "g", io[:1], io[1:], initializer=[w])
    (b / "model.onnx").write_bytes(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString())
    _relist(b, "model.onnx")


def safetensors_huge_header(b, m):
    data = (b / "model.safetensors").read_bytes()
    (b / "model.safetensors").write_bytes((50 * 2**30).to_bytes(8, "little") + data[8:])
    _relist(b, "model.safetensors")


def metadata_not_json(b, m):
    (b / "metadata.json").write_text('{"format": "workbench.bundle/1", ')


def _with_meta(name, change):
    "A case that edits the metadata with `change(meta)` and writes it back, as a forger or a careless hand would."
    def case(b, m):
        meta = _meta(b)
        change(meta)
        _write_meta(b, meta)

    case.__name__ = name
    return case


metadata_files_a_list = _with_meta("metadata_files_a_list", lambda meta: meta.update(files=list(meta["files"])))
metadata_size_a_string = _with_meta("metadata_size_a_string", lambda meta: meta["files"]["model.onnx"].update(size="12"))
metadata_sha_not_hex = _with_meta("metadata_sha_not_hex", lambda meta: meta["files"]["model.onnx"].update(sha256="../../etc/passwd"))
metadata_object_dtype = _with_meta("metadata_object_dtype", lambda meta: meta["inputs"][0].update(dtype="object"))
metadata_unknown_format = _with_meta("metadata_unknown_format", lambda meta: meta["files"]["model.onnx"].update(format="pickle"))
metadata_tolerance_text = _with_meta("metadata_tolerance_text", lambda meta: meta.update(tolerance={"atol": "__import__('os')", "rtol": 0.1}))


def metadata_deeply_nested(b, m):
    (b / "metadata.json").write_text("[" * 100_000 + "]" * 100_000)


def metadata_huge(b, m):
    with open(b / "metadata.json", "wb") as f:
        f.truncate(64 * 2**20)


def metadata_a_list(b, m):
    (b / "metadata.json").write_text("[1, 2, 3]")


CASES = [  # (case, base, action, words in the error)
    (pt2_pickle_only, "torch", "load", "no file of this bundle loads without running code"),
    (pt2_pickle_asked, "torch", "load_pt2", "model.pt2: a .pt2 archive is unpickled"),
    (pt2_zip_slip, "torch", "load_pt2", "model.pt2: a .pt2 archive is unpickled"),
    (pt2_beside_onnx, "torch", "serve", "model.onnx is not an ONNX model"),
    (skops_os_function, "sklearn", "load", "model.skops contains types that are not trusted"),
    (skops_sklearn_function, "sklearn", "load", "sklearn.utils.validation.check_array"),
    (skops_is_a_pickle, "sklearn", "load", "model.skops cannot be loaded by its skops backend"),
    (sample_npy_pickle, "torch", "check", "sample.npy holds Python objects"),
    (expected_npy_pickle, "torch", "check", "expected.npy holds Python objects"),
    (sample_npz_pickle, "torch", "check", "holds Python objects"),
    (sample_npy_forged_size, "torch", "serve", "sample.npy declares"),
    (name_with_dotdot, "torch", "load", "'../outside.onnx', which is not a plain file name"),
    (name_absolute, "torch", "register", "which is not a plain file name"),
    (name_with_separator, "torch", "load", "'sub/model.onnx', which is not a plain file name"),
    (model_symlink_out, "torch", "load", "model.onnx is a symbolic link"),
    (sample_symlink_out, "torch", "check", "sample.npy is a symbolic link"),
    (metadata_symlink, "torch", "register", "metadata.json is a symbolic link"),
    (bundle_is_a_symlink, "torch", "load", "is a symbolic link"),
    (sparse_2gb_model, "torch", "load", "model.onnx has 2,147,483,648 bytes where the bundle recorded"),
    (model_is_a_folder, "torch", "load", "model.onnx is not a regular file"),
    (model_is_a_fifo, "torch", "check", "model.onnx is not a regular file"),
    (onnx_not_protobuf, "torch", "load", "model.onnx is not an ONNX model"),
    (onnx_external_data, "torch", "serve", "model.onnx keeps tensors in other files (../secret.bin)"),
    (safetensors_huge_header, "torch", "load_torch", "model.safetensors is not a safetensors file"),
    (metadata_not_json, "torch", "load", "metadata.json is not valid JSON"),
    (metadata_files_a_list, "torch", "register", "at files"),
    (metadata_size_a_string, "torch", "load", "at files.model.onnx.size"),
    (metadata_sha_not_hex, "torch", "load", "at files.model.onnx.sha256"),
    (metadata_object_dtype, "torch", "load", "at inputs[0].dtype"),
    (metadata_deeply_nested, "torch", "load", "metadata.json is not valid JSON"),
    (metadata_huge, "torch", "load", "not a bundle's metadata (a few kB)"),
    (metadata_a_list, "sklearn", "check", "is not a workbench bundle's metadata (at the top"),
    (metadata_unknown_format, "sklearn", "load", "at files.model.onnx.format"),
    (metadata_tolerance_text, "sklearn", "serve", "at tolerance.atol"),
]


def _act(action, bundle):
    if action == "load":
        return load(bundle)
    if action == "load_pt2":
        return load(bundle, backend="pt2")
    if action == "load_torch":
        return load(bundle, backend="torch", model=synth_mlp())
    if action == "check":
        return check(bundle)
    if action == "register":
        return register(bundle)
    from workbench.batching import Model

    return Model("m", bundle).load()  # what a server does at its start: load, then answer the stored sample


@pytest.mark.parametrize("case, base, action, words", CASES, ids=[c[0].__name__ for c in CASES])
def test_a_hostile_bundle_runs_nothing_and_says_why_in_one_line(bundles, tmp_path, case, base, action, words):
    bundle, marker = tmp_path / "bundle", tmp_path / "marker"
    shutil.copytree(bundles / base, bundle)
    case(bundle, marker)
    with pytest.raises(WorkbenchError) as e:
        _act(action, bundle)
    message = str(e.value)
    assert words in message and "\n" not in message and len(message) < 600, message
    assert not marker.exists(), "the bundle ran code"


def test_so_many_cases(bundles):
    assert len(CASES) >= 20 and len({c[0] for c in CASES}) == len(CASES)


def test_a_pt2_named_trusted_is_loaded_and_an_untouched_bundle_loads(bundles, tmp_path):
    "The same doors let the product's own bundles through: trust is what changes, not whether the files are read."
    x = np.random.default_rng(0).normal(size=(3, 8)).astype(np.float32)
    onnx = load(bundles / "torch").predict(x)
    np.testing.assert_allclose(load(bundles / "torch", backend="pt2", trusted=["pt2"]).predict(x), onnx, atol=1e-5)
    assert set(check(bundles / "sklearn")) == {"onnx"} and load(bundles / "sklearn", backend="skops").predict(x[:, :4]).shape == (3,)

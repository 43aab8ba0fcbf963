"""The registry as a team uses it: bundles exported inside runs become versions, aliases move, load goes through it."""
import os
from concurrent.futures import ProcessPoolExecutor

import pytest
import torch
from torch import nn

from conftest import tamper_kept, workbench, write_notebook
from pathlib import Path

from workbench.artifacts import artifacts_root, is_url
from workbench.bundles import _resolve
from workbench.core import InputError, file_sha256
from workbench.export import check, export, load
from workbench.registry import lineage, model_version, models, promote, register
from workbench.run import run_notebook
from workbench.store import RunStore

pytestmark = pytest.mark.both_stores  # each test on SQLite and a folder, and on PostgreSQL and S3


def _hashes(folder) -> dict:
    return {p.name: file_sha256(p) for p in sorted(Path(folder).iterdir())}


def _here(v) -> Path:
    "A version's files on this machine: its folder in the artifact store, or this machine's cache of the bucket's."
    return _resolve(v.uri)[0]


def _bundle(path, seed=0, name="scorer"):
    torch.manual_seed(seed)
    return export(nn.Sequential(nn.Linear(4, 2)).eval(), torch.randn(4, 4), path, name=name, formats=["onnx"])


def test_an_export_inside_a_run_is_registered_with_its_run(tmp_path):
    nb = write_notebook(tmp_path / "make.ipynb",
                        "import torch\nfrom torch import nn\nfrom workbench.export import export\nfrom workbench.runs import record\n"
                        "b = export(nn.Sequential(nn.Linear(4, 2)).eval(), torch.randn(4, 4), 'bundle', name='scorer', formats=['onnx'], overwrite=True)\n"
                        "record('version', b.version)", parameters="lr = 0.1")
    first = run_notebook(nb, {"lr": 0.5}, out_dir=tmp_path / "out", html=False)
    v1_before = _hashes(_here(model_version("scorer", 1)))
    second = run_notebook(nb, out_dir=tmp_path / "out2", html=False)
    assert first.ok and second.ok and (first.metrics["version"], second.metrics["version"]) == (1, 2)
    v1 = model_version("scorer", 1)
    assert v1.run_id == first.id and v1.source["exported_to"] == str((tmp_path / "bundle").resolve()) and "workbench" in v1.source["versions"]
    root = artifacts_root(RunStore())
    assert v1.path.startswith(f"{root}/bundles/") if is_url(root) else Path(v1.path).parent == tmp_path / "artifacts" / "bundles"
    # the second run exported into the same folder (overwrite=True): version 1 is still byte for byte what it was
    assert _hashes(_here(v1)) == v1_before and _hashes(_here(v1)) != _hashes(_here(model_version("scorer", 2)))
    steps = lineage("scorer", 1).steps
    assert steps[0]["run_id"] == first.id and steps[0]["params"] == {"lr": 0.5} and steps[0]["notebook"].endswith("make.ipynb")


def test_the_command_lists_promotes_and_walks_lineage(tmp_path):
    register(_bundle(tmp_path / "a").path)
    register(_bundle(tmp_path / "b", seed=1).path, tags={"data": "november"})
    out = workbench("models", "promote", "scorer", "2", "production")
    assert out.returncode == 0 and "models:/scorer/2 (production)" in out.stdout, out.stderr
    listed = workbench("models")
    assert listed.returncode == 0 and listed.stdout.splitlines()[1].split()[:3] == ["scorer", "2", "production"], listed.stdout
    walked = workbench("models", "lineage", "scorer", "production")
    assert walked.returncode == 0 and walked.stdout.startswith("models:/scorer/2 (production)")
    for args, message in [(["promote", "scorer", "9", "production"], "has no version '9'"), (["lineage", "nobody"], "no model named 'nobody'"),
                          (["promote", "scorer"], "workbench models [NAME]"), (["promote", "scorer", "1", "2"], "an alias is a name")]:
        bad = workbench("models", *args)
        assert bad.returncode == 2 and message in bad.stderr and "Traceback" not in bad.stderr, bad.stderr


@pytest.mark.parametrize("how", ["rewritten", "truncated", "appended"])
def test_a_write_into_the_exported_files_never_reaches_the_registered_version(tmp_path, how):
    "The store keeps copies: what happens to the files of the folder a version came from stays there (as root too, who ignores 0444)."
    x = torch.randn(3, 4).numpy()
    answers = load(register(_bundle(tmp_path / "a").path).uri).predict(x)
    model = tmp_path / "a" / "model.onnx"
    assert model.stat().st_mode & 0o200  # registering left the user's own file writable, as it was
    with open(model, "ab" if how == "appended" else "r+b") as f:  # the same file, written in place (np.save over a path does this)
        if how == "truncated":
            f.truncate(10)
        else:
            f.write(b"not the model")
    assert (load("models:/scorer/1").predict(x) == answers).all() and set(check("models:/scorer/1")) == {"onnx"}


@pytest.mark.parametrize("how", ["overwrite", "removed", "renamed"])
def test_a_registered_version_outlives_what_happens_to_its_folder(tmp_path, how):
    v1 = register(_bundle(tmp_path / "a").path)
    x = torch.randn(3, 4).numpy()
    before, answers = _hashes(_here(v1)), load("models:/scorer/1").predict(x)
    if how == "overwrite":
        _bundle_again = export(nn.Sequential(nn.Linear(4, 2)).eval(), torch.randn(4, 4), tmp_path / "a", name="scorer",
                               formats=["onnx"], overwrite=True)
        assert _bundle_again.path == tmp_path / "a"
    elif how == "removed":
        import shutil

        shutil.rmtree(tmp_path / "a")
    else:
        os.rename(tmp_path / "a", tmp_path / "elsewhere")
    assert _hashes(_here(v1)) == before
    assert (load("models:/scorer/1").predict(x) == answers).all() and set(check("models:/scorer/1")) == {"onnx"}


def test_promote_refuses_a_tampered_version_and_check_names_the_file(tmp_path):
    v1 = register(_bundle(tmp_path / "a").path)
    register(_bundle(tmp_path / "b", seed=1).path)
    promote("scorer", 2, "production")
    ok = workbench("check", "models:/scorer/1")
    assert ok.returncode == 0 and "onnx: ok" in ok.stdout, ok.stderr
    tamper_kept(v1.uri, "model.onnx")
    bad = workbench("models", "promote", "scorer", "1", "production")
    assert bad.returncode == 2 and "model.onnx no longer has the digest" in bad.stderr and "Traceback" not in bad.stderr
    assert model_version("scorer", "production").version == 2
    checked = workbench("check", "models:/scorer/1")
    assert checked.returncode == 2 and "model.onnx" in checked.stderr


def test_models_gc_lists_then_removes_only_what_no_version_references(tmp_path):
    from workbench.artifacts import artifacts_root, keep

    v1 = register(_bundle(tmp_path / "a").path)
    (tmp_path / "stray").mkdir()
    (tmp_path / "stray" / "notes.txt").write_text("left by a registration that died before its row")
    keep(tmp_path / "stray", {"notes.txt": None}, artifacts_root(RunStore()))
    listed = workbench("models", "gc")
    assert listed.returncode == 0 and listed.stdout.count("\n") == 3 and "--delete" in listed.stdout, listed.stdout  # a blob, a folder, the hint
    assert workbench("models", "gc", "--delete").returncode == 0
    again = workbench("models", "gc")
    assert again.returncode == 0 and "nothing" in again.stdout and _hashes(_here(v1)) and load("models:/scorer/1")


@pytest.mark.parametrize("uri, message", [("models:/", "a model URI is"), ("models:/scorer/1/2", "a model URI is"),
                                          ("models:/nobody/1", "no model named 'nobody'"), ("models:/scorer/7", "has no version '7'"),
                                          ("models:/scorer/staging", "has no version 'staging'")])
def test_unknown_model_uris_say_what_there_is(tmp_path, uri, message):
    register(_bundle(tmp_path / "a").path)
    with pytest.raises(InputError, match=message):
        load(uri)


def test_what_is_not_a_bundle_is_not_registered(tmp_path):
    (tmp_path / "folder").mkdir()
    with pytest.raises(InputError, match="is not a workbench bundle"):
        register(tmp_path / "folder")
    with pytest.raises(InputError, match="there is no bundle at"):
        register(tmp_path / "missing")
    assert models().empty


def _promote(args):
    store, version = args
    return promote("scorer", version, "production", store=store).version


def test_two_processes_promoting_at_once_both_recorded_one_wins(tmp_path):
    store = tmp_path / "runs.db"
    for i in range(2):
        register(_bundle(tmp_path / f"v{i}", seed=i).path, store=store)
    with ProcessPoolExecutor(2) as pool:
        assert sorted(pool.map(_promote, [(str(store), 1), (str(store), 2)] * 10)) == [1] * 10 + [2] * 10
    history = RunStore(store).alias_history("scorer")
    assert len(history) == 20 and model_version("scorer", "production", store).version == history["version"].iloc[-1]
    assert history["previous"].iloc[1:].tolist() == history["version"].iloc[:-1].tolist()  # each move saw the one before

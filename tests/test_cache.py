"""What a pipeline stage's result depends on, as users' projects hold it: their modules, their outputs, the lock file."""
import shutil
from pathlib import Path

import pytest

from conftest import workbench, write_notebook

from workbench.cache import project_modules
from workbench.pipeline import Pipeline
from workbench.testing import run_tests


def statuses(yaml: Path, out: Path, **kw) -> dict:
    result = Pipeline.from_yaml(yaml).run(out_dir=out, html=False, verbose=False, **kw)
    return {name: r.status for name, r in result.runs.items()}


def project(root: Path) -> Path:
    "helpers.py, and a package two imports away from the notebook; `uses` writes what they compute, `after` reads it."
    (root / "pkg").mkdir()
    (root / "pkg" / "__init__.py").write_text("")
    (root / "pkg" / "shapes.py").write_text("SIDES = 4\n")
    (root / "pkg" / "util.py").write_text("from .shapes import SIDES\n\ndef corners():\n    return SIDES\n")
    (root / "helpers.py").write_text("from pkg.util import corners\n")
    write_notebook(root / "uses.ipynb", "from pathlib import Path\nimport helpers",
                   "Path(run_dir, 'corners.txt').write_text(str(helpers.corners()))", parameters="run_dir = '.'")
    write_notebook(root / "after.ipynb", "from pathlib import Path\nfrom workbench.runs import record",
                   "record('corners', int(Path(data).read_text()))", parameters="data = ''")
    write_notebook(root / "alone.ipynb", "import json")
    write_notebook(root / "blind.ipynb", "import helpers")
    (root / "p.yaml").write_text(
        "stages:\n"
        "  uses: {notebook: uses.ipynb, outputs: {corners: corners.txt}}\n"
        "  after: {notebook: after.ipynb, params: {data: '${uses.outputs.corners}'}}\n"
        "  alone: {notebook: alone.ipynb}\n"
        "  blind: {notebook: blind.ipynb, track_imports: false}\n")
    return root / "p.yaml"


def test_an_edited_project_module_runs_its_importers_and_their_dependents_only(tmp_path):
    yaml, out = project(tmp_path), tmp_path / "out"
    assert statuses(yaml, out) == {"uses": "ok", "after": "ok", "alone": "ok", "blind": "ok"}
    assert statuses(yaml, out) == dict.fromkeys(["uses", "after", "alone", "blind"], "cached")
    (tmp_path / "pkg" / "shapes.py").write_text("SIDES = 5\n")  # two imports away from the notebook
    dry = workbench("run", yaml, "-o", out, "--dry-run")
    assert dry.returncode == 0 and "module pkg.shapes changed" in dry.stdout, dry.stdout + dry.stderr
    explained = workbench("run", yaml, "-o", out, "--no-html", "--explain")
    assert explained.returncode == 0, explained.stdout + explained.stderr
    lines = {line.split()[1]: line for line in explained.stdout.splitlines() if "running" in line}
    assert set(lines) == {"uses", "after"}  # after: its input's bytes changed; alone and blind (opted out) stay cached
    assert "module pkg.shapes changed" in lines["uses"] and "output corners of uses changed" in lines["after"]
    assert statuses(yaml, out) == dict.fromkeys(["uses", "after", "alone", "blind"], "cached")
    (tmp_path / "pkg" / "util.py").write_text("from .shapes import SIDES\n\ndef corners():\n    return SIDES  # same\n")
    assert statuses(yaml, out) == {"uses": "ok", "after": "cached", "alone": "cached", "blind": "cached"}  # same bytes out


IMPORTS = {  # how notebooks in the wild import a project's own code
    "import": "import helpers",
    "alias": "import helpers as h",
    "from": "from helpers import corners",
    "dotted": "import pkg.util",
    "from-package": "from pkg import util",
    "from-module": "from pkg.util import corners as c",
    "in-function": "def f():\n    import helpers\n    return helpers",
    "in-try": "try:\n    import helpers\nexcept ImportError:\n    helpers = None",
    "after-magics": "%load_ext autoreload\n%autoreload 2\n!echo hi\nimport helpers",
    "cell-magic": "%%time\nimport helpers",
    "capture": "%%capture out\nfrom pkg import util",
    "conditional": "import sys\nif sys.version_info > (3,):\n    from helpers import corners",
    "namespace": "from src.features import build",
    "semicolons": "import os; import helpers; helpers.corners()",
}


@pytest.mark.parametrize("source", IMPORTS.values(), ids=IMPORTS.keys())
def test_project_modules_are_found_however_they_are_imported(tmp_path, source):
    project(tmp_path)
    (tmp_path / "src" / "features").mkdir(parents=True)  # a namespace package: no __init__.py
    (tmp_path / "src" / "features" / "build.py").write_text("import numpy\n")
    write_notebook(tmp_path / "nb.ipynb", "import numpy, json, os", source)
    found = set(project_modules(tmp_path / "nb.ipynb"))
    expected = {"src.features.build"} if "src" in source else {"pkg", "pkg.util", "pkg.shapes"}
    assert expected <= found, found
    assert not {"numpy", "json", "os", "sys"} & found


def test_what_cannot_be_read_is_no_dependency_and_no_error(tmp_path):
    write_notebook(tmp_path / "nb.ipynb", "def broken(:", "importlib.import_module('x')", "%%bash\nimport nothing",
                   "from . import sibling", "import not_installed_anywhere")
    assert project_modules(tmp_path / "nb.ipynb") == {}


def test_a_stage_that_stops_writing_an_output_fails_and_keeps_the_previous_one(tmp_path):
    write_notebook(tmp_path / "fit.ipynb", "from pathlib import Path",
                   "if write:\n    Path(run_dir, 'model.txt').write_text(version)",
                   "if half:\n    Path(run_dir, 'model.txt').write_text('half')\n    raise RuntimeError('disk full')",
                   parameters="run_dir = '.'\nwrite = True\nhalf = False\nversion = 'v1'")
    write_notebook(tmp_path / "resume.ipynb", "from pathlib import Path\nfrom workbench.runs import record",
                   "ckpt = Path(run_dir, 'ckpt.txt')\nrecord('resumed', ckpt.exists())\nckpt.write_text('state')",
                   parameters="run_dir = '.'\nepochs = 1")
    (tmp_path / "p.yaml").write_text(
        "stages:\n  fit: {notebook: fit.ipynb, outputs: {model: model.txt}}\n"
        "  train: {notebook: resume.ipynb, outputs: {checkpoint: ckpt.txt}, persist: [checkpoint]}\n")
    out, model = tmp_path / "out", tmp_path / "out" / "model.txt"
    run = lambda **params: Pipeline.from_yaml(tmp_path / "p.yaml").run(params, out_dir=out, html=False, verbose=False)
    first = run()
    assert first.ok and model.read_text() == "v1" and first.runs["train"].metrics == {"resumed": False}
    stopped = run(write=False, epochs=2)  # the old model.txt is set aside: it cannot pass for this run's
    assert stopped.runs["fit"].error["ename"] == "MissingOutput" and model.read_text() == "v1"
    assert stopped.runs["train"].metrics == {"resumed": True}  # persist: its own checkpoint stayed for it
    half = run(half=True, version="v2")
    assert half.runs["fit"].status == "failed" and model.read_text() == "v1"  # what it half-wrote is gone
    assert not list((out / ".aside").rglob("*.txt"))
    assert run(version="v2").ok and model.read_text() == "v2"
    assert not list((out / ".aside").rglob("*.txt"))


def test_the_lock_file_is_deterministic_and_tells_a_clone_what_is_up_to_date(tmp_path):
    first = tmp_path / "me"
    first.mkdir()
    yaml = project(first)
    (first / "data.csv").write_text("a\n1\n")
    text = yaml.read_text().replace("alone: {notebook: alone.ipynb}", "alone: {notebook: alone.ipynb, inputs: [data.csv]}")
    yaml.write_text(text)
    assert set(statuses(yaml, first / "runs").values()) == {"ok"}
    lock = (first / "p.lock").read_text()
    assert str(tmp_path) not in lock and "run_id" not in lock  # nothing of this machine or moment
    shutil.rmtree(first / "runs")
    assert set(statuses(yaml, first / "runs", force=True).values()) == {"ok"}
    assert (first / "p.lock").read_text() == lock  # the same results, the same bytes

    clone = tmp_path / "elsewhere" / "clone"  # another path: nothing absolute may be in a key
    shutil.copytree(first, clone)
    for record in (clone / "runs").glob("*/stage.json"):
        record.unlink()  # a clone has the lock file and the outputs (fetched), not this machine's records
    dry = workbench("run", clone / "p.yaml", "-o", clone / "runs", "--dry-run")
    assert dry.returncode == 0 and [line.split()[1] for line in dry.stdout.splitlines()] == ["cached"] * 4, dry.stdout
    assert set(statuses(clone / "p.yaml", clone / "runs").values()) == {"cached"}
    (clone / "data.csv").write_text("a\n2\n")
    dry = workbench("run", clone / "p.yaml", "-o", clone / "runs", "--dry-run")
    assert "alone  run      input data.csv changed" in dry.stdout, dry.stdout
    shutil.rmtree(clone / "runs")
    dry = workbench("run", clone / "p.yaml", "-o", clone / "runs", "--dry-run")
    assert "uses   run      output corners is missing" in dry.stdout, dry.stdout

    (clone / "p.lock").write_text("<<<<<<< HEAD\n" + lock)
    broken = workbench("run", clone / "p.yaml", "-o", clone / "runs")
    assert broken.returncode == 2 and "p.lock cannot be read" in broken.stderr and "Traceback" not in broken.stderr


def test_runs_that_are_not_the_pipeline_leave_its_lock_file_alone(tmp_path):
    yaml = project(tmp_path)
    runs = run_tests([tmp_path], workers=1, out_dir=tmp_path / "test-out")
    assert all(r.status == "ok" for r in runs) and not (tmp_path / "p.lock").exists()
    assert workbench("run", yaml, "-o", tmp_path / "out", "--no-lock", "--no-html").returncode == 0
    assert not (tmp_path / "p.lock").exists()


def test_a_stage_whose_kernel_dies_once_passes_when_retried(tmp_path):
    for name in ("flaky", "strict"):  # each kills its kernel the first time it runs
        flag = tmp_path / f"{name}-died"
        write_notebook(tmp_path / f"{name}.ipynb", "import os, signal\nfrom pathlib import Path",
                       f"if not Path({str(flag)!r}).exists():\n    Path({str(flag)!r}).touch()\n    os.kill(os.getpid(), signal.SIGKILL)")
    (tmp_path / "p.yaml").write_text("stages:\n  flaky: {notebook: flaky.ipynb, retries: 2, retry_on: dead_kernel}\n"
                                     "  strict: {notebook: strict.ipynb}\n")
    result = Pipeline.from_yaml(tmp_path / "p.yaml").run(out_dir=tmp_path / "out", html=False, verbose=False)
    assert result.runs["flaky"].status == "ok" and result.runs["flaky"].reason == "run again after: dead kernel"
    assert result.runs["strict"].error["ename"] == "DeadKernelError"  # no retries: the first death is its result


def test_pipeline_show_prints_and_draws_the_dag(tmp_path):
    yaml = project(tmp_path)
    out = workbench("pipeline", "show", yaml, "--plot", tmp_path / "dag.svg")
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[:3] == ["stage  notebook     needs  writes", "uses   uses.ipynb   -      corners.txt",
                                           "alone  alone.ipynb  -      -"]
    assert "after  after.ipynb  uses" in out.stdout  # found from its reference
    assert (tmp_path / "dag.svg").read_text().count("<svg") == 1
    assert workbench("pipeline", "show", tmp_path / "missing.yaml").returncode == 2


@pytest.mark.parametrize("how", ["a file in the folder changed", "a file added", "a file removed", "the file itself changed"])
def test_new_data_behind_a_parameter_path_runs_exactly_what_depends_on_it(tmp_path, how):
    "A parameter naming a folder (or a file) is keyed by its content: the stage that reads it and the stage after it run again, the rest stay cached."
    (tmp_path / "traffic").mkdir()
    for i in range(3):
        (tmp_path / "traffic" / f"part-{i}.csv").write_text(f"x\n{i}\n")
    (tmp_path / "labels.csv").write_text("y\n1\n")
    write_notebook(tmp_path / "count.ipynb", "from pathlib import Path",
                   "rows = sum(len(p.read_text().split()) - 1 for p in Path(traffic).glob('*.csv')) + len(Path(labels).read_text().split())",
                   "Path(run_dir, 'rows.txt').write_text(str(rows))", parameters="traffic = ''\nlabels = ''\nrun_dir = '.'")
    write_notebook(tmp_path / "after.ipynb", "from pathlib import Path\nfrom workbench.runs import record",
                   "record('rows', int(Path(counted).read_text()))", parameters="counted = ''")
    write_notebook(tmp_path / "other.ipynb", "import json", parameters="name = 'x'")
    (tmp_path / "p.yaml").write_text(
        "stages:\n"
        "  count: {notebook: count.ipynb, params: {traffic: traffic, labels: labels.csv}, outputs: {rows: rows.txt}}\n"
        "  after: {notebook: after.ipynb, params: {counted: '${count.outputs.rows}'}}\n"
        "  other: {notebook: other.ipynb, params: {name: traffic-report}}\n")
    out = tmp_path / "out"
    assert set(statuses(tmp_path / "p.yaml", out).values()) == {"ok"}
    assert set(statuses(tmp_path / "p.yaml", out).values()) == {"cached"}
    if how == "a file in the folder changed":
        (tmp_path / "traffic" / "part-1.csv").write_text("x\n1\n2\n")
    elif how == "a file added":
        (tmp_path / "traffic" / "part-3.csv").write_text("x\n3\n")
    elif how == "a file removed":
        (tmp_path / "traffic" / "part-0.csv").unlink()
    else:
        (tmp_path / "labels.csv").write_text("y\n1\n0\n")
    assert statuses(tmp_path / "p.yaml", out) == {"count": "ok", "after": "ok", "other": "cached"}
    assert set(statuses(tmp_path / "p.yaml", out).values()) == {"cached"}

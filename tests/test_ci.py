"""`workbench deploy models:/NAME@ALIAS --target github-actions|jenkins`: the CI job that tests the notebooks, runs the
pipeline and promotes through the gate. The workflow is checked by actionlint and by GitHub's published schema
(check-jsonschema's copy); every command either file runs is parsed by workbench's own parser, so a renamed flag
breaks this test before it breaks a team's CI. Bad input: exit 2, nothing written.
"""
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import workbench
from workbench.cli import _parser

BIN = Path(sys.executable).parent
FLAGS = ["--pipeline", "nbs/pipelines/demo.yaml", "--on", "data/held.parquet", "--label-column", "digit", "--fair", "ink"]


def _workbench_commands(lines: list) -> list:
    "The `workbench ...` commands in shell lines (after `&&`), as argument lists."
    found = []
    for line in lines:
        for part in line.split("&&"):
            words = shlex.split(part.strip())
            if words and words[0] == "workbench":
                found.append(words[1:])
    return found


def _parses(commands: list):
    for words in commands:
        try:
            _parser().parse_args(words)
        except SystemExit:
            pytest.fail(f"workbench {shlex.join(words)} does not parse")


def test_a_github_actions_workflow_that_actionlint_and_the_schema_accept(tmp_path):
    out = tmp_path / ".github" / "workflows"
    made = workbench("deploy", "models:/digits-cnn@production", "--target", "github-actions", "--out", out, *FLAGS)
    assert made.returncode == 0, made.stderr
    path = out / "workbench.yml"
    assert made.stdout.strip() == str(path)
    lint = subprocess.run([BIN / "actionlint", "-no-color", path], capture_output=True, text=True)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    schema = subprocess.run([BIN / "check-jsonschema", "--builtin-schema", "vendor.github-workflows", path], capture_output=True, text=True)
    assert schema.returncode == 0, schema.stdout + schema.stderr
    workflow = yaml.safe_load(path.read_text())
    runs = [s["run"] for job in workflow["jobs"].values() for s in job["steps"] if "run" in s]
    commands = _workbench_commands(runs)
    assert [c[:2] for c in commands] == [["test", "nbs"], ["run", "nbs/pipelines/demo.yaml"], ["models", "promote"]]
    _parses(commands)
    gate = _parser().parse_args(commands[2])
    assert (gate.words, gate.if_better_than, gate.target, gate.fair) == (["promote", "digits-cnn", "latest", "production"], "production", "digit", "ink")
    assert "--junit-xml" in commands[0] and workflow["jobs"]["promote"]["needs"] == "test"


def test_a_jenkinsfile_of_a_declarative_pipeline(tmp_path):
    made = workbench("deploy", "models:/digits-cnn@production", "--target", "jenkins", "--out", tmp_path, *FLAGS)
    assert made.returncode == 0, made.stderr
    text = (tmp_path / "Jenkinsfile").read_text()
    body = re.sub(r"'(\\.|[^'\\])*'", "''", text.split("\n", 1)[1])  # strings out: what is left is structure
    assert body.count("{") == body.count("}") and body.startswith("pipeline {")
    assert re.findall(r"stage\('(\w+)'\)", text) == ["install", "test", "pipeline", "gate"]
    shells = [s.replace("\\'", "'").replace("\\\\", "\\") for s in re.findall(r"sh '((?:\\.|[^'\\])*)'", text)]
    commands = _workbench_commands(shells)
    assert [c[0] for c in commands] == ["test", "run", "models"]
    _parses(commands)
    assert "junit 'test-results/notebooks.xml'" in text


@pytest.mark.parametrize("source, flags, message", [
    ("models:/digits-cnn@production", ["--on", "held.parquet"], "--pipeline FILE and --on DATA"),
    ("some/folder", FLAGS, "give one models:/NAME@ALIAS"),
    ("models:/digits-cnn/3", FLAGS, "the gate moves an alias"),
    ("models:/digits-cnn@production", FLAGS, "exists: remove it"),
])
def test_bad_ci_jobs_exit_2_and_write_nothing(tmp_path, source, flags, message):
    (tmp_path / "workbench.yml").write_text("mine")
    out = workbench("deploy", source, "--target", "github-actions", "--out", tmp_path, *flags)
    assert out.returncode == 2 and message in out.stderr, out.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["workbench.yml"] and (tmp_path / "workbench.yml").read_text() == "mine"

"""A second version beside the served one, in a real server process: a canary answers its share of the requests (drawn
per request, so 10% of 2,000 is near 200, not exactly), a shadow gets a copy of every request and answers off the hot
path; each answer is counted by version and role in /metrics and logged with its version and role.
"""
import concurrent.futures
import json
import re
import subprocess
import sys
import time
import urllib.request

import pytest

from workbench.core import InputError
from workbench.registry import promote, register
from workbench.serve import serve
from workbench.traffic import read_traffic

from test_serve_registry import _constant

pytestmark = pytest.mark.xdist_group("serve-registry")


def _ask(url: str, request_id: str) -> tuple:
    "(status, the version that answered, the answer) of one plain request."
    request = urllib.request.Request(url + "/predict", data=json.dumps({"inputs": [[0.1, 0.2, 0.3]]}).encode(),
                                     headers={"content-type": "application/json", "x-request-id": request_id})
    with urllib.request.urlopen(request, timeout=30) as r:
        return r.status, r.headers["x-model-version"], round(json.loads(r.read())["predictions"][0], 3)


def _metric(url: str, name: str, **labels) -> float:
    "The value of one sample in /metrics (0 where it is not there yet)."
    with urllib.request.urlopen(url + "/metrics") as r:
        text = r.read().decode()
    for found in re.finditer(rf"^{name}\{{(.*)\}} (\S+)$", text, re.M):
        if dict(re.findall(r'(\w+)="([^"]*)"', found.group(1))) == {k: str(v) for k, v in labels.items()}:
            return float(found.group(2))
    return 0.0


def _versions(tmp_path, *values):
    for value in values:
        register(_constant(value, tmp_path / f"v{value:.0f}"), name="scorer")


def test_a_canary_answers_its_share_and_follows_its_alias(tmp_path):
    _versions(tmp_path, 1.0, 2.0, 3.0)
    promote("scorer", 1, "champion")
    promote("scorer", 2, "challenger")
    server = serve(["models:/scorer@champion"], canary=["models:/scorer@challenger:10%"], log_requests=str(tmp_path / "traffic"),
                   watch_seconds=0.2)
    try:
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda i: _ask(server.url, f"r{i}"), range(2000)))
        assert {status for status, _, _ in answers} == {200}
        assert {(v, a) for _, v, a in answers} == {("1", 1.0), ("2", 2.0)}  # each answer from the version that says it gave it
        canary = sum(v == "2" for _, v, _ in answers)
        assert 140 <= canary <= 260, canary  # 10% +- 3% of 2,000
        assert _metric(server.url, "workbench_version_answers_total", model="scorer", version="2", role="canary", result="ok") == canary
        assert _metric(server.url, "workbench_version_answers_total", model="scorer", version="1", role="champion", result="ok") == 2000 - canary
        assert _metric(server.url, "workbench_version_seconds_count", model="scorer", version="2", role="canary") == canary

        promote("scorer", 3, "challenger")  # the canary's alias moves: the canary follows, the champion stays
        deadline, seen = time.monotonic() + 30, set()
        while time.monotonic() < deadline and "3" not in seen:
            seen |= {_ask(server.url, "after")[1] for _ in range(20)}
        assert "3" in seen and "2" not in {_ask(server.url, "after")[1] for _ in range(100)}
    finally:
        server.stop()
    logged = read_traffic(tmp_path / "traffic")
    assert len(logged[logged["request"].str.fullmatch(r"r\d+")]) == 2000
    by_request = logged.drop_duplicates("request").set_index("request")
    assert all(by_request.loc[f"r{i}", "version"] == int(v) for i, (_, v, _) in enumerate(answers))
    assert set(logged["role"]) == {"champion", "canary"}


def test_a_shadow_sees_every_request_and_its_answers_are_logged_beside(tmp_path):
    _versions(tmp_path, 1.0, 2.0)
    promote("scorer", 1, "champion")
    promote("scorer", 2, "challenger")
    server = serve(["models:/scorer@champion"], shadow=["models:/scorer@challenger"], log_requests=str(tmp_path / "traffic"))
    try:
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda i: _ask(server.url, f"r{i}"), range(300)))
        assert set(answers) == {(200, "1", 1.0)}  # the client hears the champion only
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and _metric(server.url, "workbench_shadow_rows_total", model="scorer", version="2", agreed="false") < 300:
            time.sleep(0.1)
        assert _metric(server.url, "workbench_version_answers_total", model="scorer", version="2", role="shadow", result="ok") == 300
        assert _metric(server.url, "workbench_shadow_rows_total", model="scorer", version="2", agreed="false") == 300  # 2.0 is not 1.0
        assert _metric(server.url, "workbench_shadow_rows_total", model="scorer", version="2", agreed="true") == 0
        with urllib.request.urlopen(server.url + "/v2/models/scorer") as r:
            assert json.loads(r.read())["versions"] == ["1"]
    finally:
        server.stop()
    answered, shadowed = read_traffic(tmp_path / "traffic"), read_traffic(tmp_path / "traffic", shadow=True)
    assert len(answered) == len(shadowed) == 300 and set(answered["version"]) == {1} and set(shadowed["version"]) == {2}
    beside = answered.merge(shadowed, on="request", suffixes=("", "_shadow"))
    assert len(beside) == 300 and set(beside["value"]) == {1.0} and set(beside["value_shadow"]) == {2.0}


def test_a_shadow_of_a_share_sees_about_that_share(tmp_path):
    bundle_a, bundle_b = _constant(1.0, tmp_path / "a"), _constant(1.0, tmp_path / "b")
    with serve([f"scorer={bundle_a}"], shadow=[f"{bundle_b}:25%"]) as server:
        for i in range(400):
            _ask(server.url, f"r{i}")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not _metric(server.url, "workbench_shadow_rows_total", model="scorer", version="1", agreed="true"):
            time.sleep(0.1)
        time.sleep(0.5)
        seen = _metric(server.url, "workbench_shadow_rows_total", model="scorer", version="1", agreed="true")
        assert 60 <= seen <= 140, seen  # a quarter of 400, and the same model's answers agree
        assert _metric(server.url, "workbench_shadow_rows_total", model="scorer", version="1", agreed="false") == 0


@pytest.mark.parametrize("options, message", [
    ({"canary": ["models:/scorer@challenger"]}, "say the share of requests"),
    ({"canary": ["models:/scorer@challenger:120%"]}, "at most 100"),
    ({"canary": ["models:/scorer@staging:10%"]}, "has no version 'staging'"),
    ({"canary": ["models:/scorer@champion:10%"]}, "already serves"),
    ({"canary": ["other=models:/scorer@challenger:10%"]}, "say which model it stands beside"),
    ({"canary": ["models:/scorer@challenger:10%"], "shadow": ["models:/scorer@challenger"]}, "one second version per model"),
])
def test_a_rollout_that_cannot_be_is_refused_before_serving(tmp_path, options, message):
    _versions(tmp_path, 1.0, 2.0)
    promote("scorer", 1, "champion")
    promote("scorer", 2, "challenger")
    with pytest.raises(InputError, match=message):
        serve(["models:/scorer@champion"], **options)


def test_the_command_line_says_what_is_wrong_and_deploy_leaves_traffic_splits_to_the_platform(tmp_path):
    from workbench.deploy import deploy
    from workbench.serve import settings

    _versions(tmp_path, 1.0, 2.0)
    promote("scorer", 1, "champion")
    promote("scorer", 2, "challenger")
    done = subprocess.run([sys.executable, "-m", "workbench.cli", "serve", "models:/scorer@champion", "--canary", "models:/scorer@challenger"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "say the share of requests the canary answers" in done.stderr and "Traceback" not in done.stderr
    with pytest.raises(InputError, match="canaryTrafficPercent"):
        deploy(settings(["models:/scorer@champion"], canary=["models:/scorer@challenger:10%"]), target="docker", out=tmp_path / "image")
    assert not (tmp_path / "image").exists()
    assert settings(["models:/scorer@champion"], shadow=["models:/scorer@challenger:5%"]).args()[-2:] == ["--shadow", "models:/scorer@challenger:5%"]

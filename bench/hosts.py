"""Across hosts: how long a serving replica takes to answer from a version promoted on another host.

Four network namespaces stand for four machines (tests/hosts.py): PostgreSQL and the S3 endpoint on `store`, two
replicas of `workbench serve models:/scorer@production` on `one` and `two` (each with its own artifact cache), a load
client on `load`. `workbench models promote` runs on `store`; the delay is from the promote command's end to each
replica's first answer from the new version, which includes fetching it from S3 and checking it. Printed against the
watch interval (`--watch-seconds`), the time a replica waits between two looks at the alias: the delay is at most the
interval plus the fetch and load, so delay ÷ interval near 1 or under is the expected figure. Needs root (namespaces).
Run: `make bench` or `.venv/bin/python bench/hosts.py`.
"""
import os
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from hosts import Hosts, Team, follow_alias, why_not  # noqa: E402  the tests' own hosts


def main():
    if why_not():
        print(f"bench/hosts.py: skipped: {why_not()}")
        return
    import torch
    from torch import nn

    from workbench.export import export
    from workbench.registry import promote, register

    hosts = Hosts("store", "one", "two", "load")
    team = None
    try:
        team = Team(hosts, "store")
        for watch in (0.5, 1.0, 2.0):
            work = Path(tempfile.mkdtemp(prefix="workbench-bench-hosts-"))
            env = team.fresh()
            os.environ.update(env, WORKBENCH_ARTIFACT_CACHE=str(work / "cache"))
            for seed in (0, 1):
                torch.manual_seed(seed)
                register(export(nn.Linear(4, 1).eval(), torch.randn(8, 4), work / f"v{seed}", name="scorer", formats=["onnx"]).path)
            promote("scorer", 1, "production")
            seen = follow_alias(hosts, env, work, watch=watch)
            errors = sum(status != 200 for _, _, status, _, _ in seen["rows"])
            delays = sorted(seen["delays"].values())
            print(f"watch {watch:3.1f} s: alias-follow delay {', '.join(f'{d:.2f}' for d in delays)} s "
                  f"(median {statistics.median(delays):.2f} s, {statistics.median(delays) / watch:.2f}x the interval); "
                  f"{len(seen['rows'])} answers under load, {errors} errors")
    finally:
        if team:
            team.stop()
        hosts.down()


if __name__ == "__main__":
    main()

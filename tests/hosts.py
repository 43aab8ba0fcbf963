"""The project's own test hosts: network namespaces on this machine (`ip netns`), each with one veth into a bridge of
its own subnet, so that a server on one host reaches another only by that host's address, as across machines. Only
these addresses and loopback are contacted. The files stay shared (one machine), as a team's shared folder would be."""
import json
import os
import secrets
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from servers import PG_PASSWORD, S3_CREDENTIALS, new_bucket, new_database, start_postgres, start_s3

WORKBENCH = str(Path(sys.executable).parent / "workbench")


def why_not() -> str | None:
    "Why network namespaces cannot be made here (not root, no `ip`, a container without the right), or None."
    if os.getuid() != 0:
        return "the multi-host tests make network namespaces, which needs root"
    if not shutil.which("ip"):
        return "the multi-host tests need iproute2's `ip` (Debian's iproute2)"
    probe = f"wbprobe{secrets.token_hex(3)}"
    steps = [["ip", "netns", "add", probe], ["ip", "link", "add", f"{probe}b", "type", "bridge"],
             ["ip", "link", "add", f"{probe}o", "type", "veth", "peer", "name", f"{probe}i"]]
    try:
        for step in steps:
            made = subprocess.run(step, capture_output=True, text=True)
            if made.returncode:
                return f"this machine does not allow network namespaces, bridges and veth pairs: `{' '.join(step)}`: {made.stderr.strip()}"
        return None
    finally:
        for gone in (["ip", "netns", "del", probe], ["ip", "link", "del", f"{probe}b"], ["ip", "link", "del", f"{probe}o"]):
            subprocess.run(gone, capture_output=True)


def _ip(*args, ns: str | None = None):
    subprocess.run([*(["ip", "netns", "exec", ns] if ns else []), "ip", *args], check=True, capture_output=True, text=True)


class Host:
    "One host: its namespace, its address, and `prefix`, the words that run a command on it."

    def __init__(self, name: str, ns: str, ip: str):
        self.name, self.ns, self.ip, self.prefix = name, ns, ip, ("ip", "netns", "exec", ns)

    def popen(self, command: list, env: dict | None = None, log: Path | None = None, **kwargs) -> subprocess.Popen:
        "Start `command` on this host (its output to `log`), with `env` added to this process's environment."
        out = open(log, "w") if log else subprocess.DEVNULL
        return subprocess.Popen([*self.prefix, *map(str, command)], env={**os.environ, **(env or {})}, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True, **kwargs)

    def run(self, command: list, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
        "Run `command` on this host to its end; its output captured as text."
        return subprocess.run([*self.prefix, *map(str, command)], env={**os.environ, **(env or {})}, capture_output=True,
                              text=True, timeout=timeout)

    def __repr__(self) -> str:
        return f"Host({self.name}, {self.ip})"


class Hosts(dict):
    "Hosts named `names`, on a bridge of their own subnet (this machine is .1 on it); `down()` removes every trace."

    def __init__(self, *names: str):
        super().__init__()
        self.token, net = secrets.token_hex(2), f"10.{100 + secrets.randbelow(150)}.{1 + secrets.randbelow(250)}"  # not `random`: tests seed it
        self.bridge, self.network = f"wb{self.token}br", f"{net}.0/24"
        try:
            _ip("link", "add", self.bridge, "type", "bridge")
            _ip("addr", "add", f"{net}.1/24", "dev", self.bridge)
            _ip("link", "set", self.bridge, "up")
            for i, name in enumerate(names, start=2):
                host = self[name] = Host(name, f"wb{self.token}{name}", f"{net}.{i}")
                outside, inside = f"wb{self.token}{name}o", f"wb{self.token}{name}i"
                _ip("netns", "add", host.ns)
                _ip("link", "add", outside, "type", "veth", "peer", "name", inside)
                _ip("link", "set", inside, "netns", host.ns)
                _ip("link", "set", outside, "master", self.bridge, "up")
                _ip("addr", "add", f"{host.ip}/24", "dev", inside, ns=host.ns)
                _ip("link", "set", inside, "up", ns=host.ns)
                _ip("link", "set", "lo", "up", ns=host.ns)
        except BaseException:
            self.down()
            raise

    def down(self):
        for host in self.values():
            pids = subprocess.run(["ip", "netns", "pids", host.ns], capture_output=True, text=True).stdout.split()
            for pid in pids:  # whatever a test left running on the host
                subprocess.run(["kill", "-9", pid], capture_output=True)
            subprocess.run(["ip", "netns", "del", host.ns], capture_output=True)
        subprocess.run(["ip", "link", "del", self.bridge], capture_output=True)


class Team:
    "What a team shares, on host `on`: a PostgreSQL server and an S3 server; `fresh()` is a new store and bucket for one test."

    def __init__(self, hosts: Hosts, on: str):
        self.hosts, self.on = hosts, hosts[on]
        self.base, self._stop_pg = start_postgres(self.on.ip, 5432, allow=hosts.network, prefix=self.on.prefix)
        try:
            self.endpoint, self._stop_s3 = start_s3(self.on.ip, 9000, prefix=self.on.prefix)
        except BaseException:
            self._stop_pg()
            raise

    def fresh(self) -> dict:
        "The environment every member of the team sets: one store, one artifact root, the keys (no secret in a URL)."
        return {"WORKBENCH_STORE": new_database(self.base), "PGPASSWORD": PG_PASSWORD, **S3_CREDENTIALS,
                "AWS_ENDPOINT_URL": self.endpoint, "WORKBENCH_ARTIFACTS": new_bucket(self.endpoint)}

    def stop(self):
        self._stop_s3()
        self._stop_pg()


def wait_ready(url: str, process: subprocess.Popen, log: Path, timeout: float = 120):
    "Return once `url`/v2/health/ready answers 200; an AssertionError with the server's log if it stops or takes too long."
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"{url}/v2/health/ready", timeout=1):
                return
        except OSError:
            assert process.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.2)


LOAD = """
import json, os, sys, threading, time, urllib.request
urls, stop, out = sys.argv[1].split(","), sys.argv[2], sys.argv[3]
rows, body = [], json.dumps({"inputs": [[0.5, -1.0, 2.0, 0.0]]}).encode()
def client(url):
    while not os.path.exists(stop):
        start = time.time()
        try:
            request = urllib.request.Request(url + "/predict", body, {"content-type": "application/json"})
            with urllib.request.urlopen(request, timeout=30) as r:
                rows.append((start, url, r.status, r.headers["x-model-version"], json.loads(r.read())["predictions"][0]))
        except Exception as e:
            rows.append((start, url, getattr(e, "code", 0), None, repr(e)))
threads = [threading.Thread(target=client, args=(url,)) for url in urls for _ in range(4)]
[t.start() for t in threads]
[t.join() for t in threads]
json.dump(rows, open(out, "w"))
"""


def follow_alias(hosts: Hosts, env: dict, folder: Path, replicas=("one", "two"), load="load", promoter="store", watch=1.0) -> dict:
    """Replicas of `workbench serve models:/scorer@production` (versions 1 and 2 registered, production at 1) on hosts
    `replicas`, each with its own cache, under load from host `load`; `workbench models promote scorer 2 production` on
    `promoter`. Returns {"rows": every answer (start, url, status, version, answer), "delays": {url: seconds from the
    promote command's end to the replica's first answer from version 2}}."""
    servers = {}
    try:
        for name in replicas:
            host, log = hosts[name], folder / f"{name}.log"
            url = f"http://{host.ip}:8000"
            servers[url] = (host.popen([WORKBENCH, "serve", "models:/scorer@production", "--host", host.ip, "--port", 8000,
                                        "--watch-seconds", watch], {**env, "WORKBENCH_ARTIFACT_CACHE": str(folder / f"cache-{name}")}, log), log)
        for url, (process, log) in servers.items():
            wait_ready(url, process, log)
        stop, out = folder / "stop-load", folder / "answers.json"
        client = hosts[load].popen([sys.executable, "-c", LOAD, ",".join(servers), stop, out], log=folder / "load.log")
        time.sleep(2)
        promoted = hosts[promoter].run([WORKBENCH, "models", "promote", "scorer", "2", "production"], env)
        assert promoted.returncode == 0, promoted.stderr
        moved, deadline = time.time(), time.monotonic() + 60
        while not all(_version(url) == "2" for url in servers):
            assert time.monotonic() < deadline, [log.read_text()[-2000:] for _, log in servers.values()]
            time.sleep(0.1)
        time.sleep(1)
        stop.touch()
        assert client.wait(60) == 0, (folder / "load.log").read_text()
        rows = json.loads(out.read_text())
        firsts = {url: min(r[0] for r in rows if r[1] == url and r[3] == "2") for url in servers}
        return {"rows": rows, "delays": {url: first - moved for url, first in firsts.items()}}
    finally:
        for process, _ in servers.values():
            process.terminate()
        for process, _ in servers.values():
            process.wait(30)


def _version(url: str) -> str | None:
    with urllib.request.urlopen(f"{url}/v2/models/scorer", timeout=10) as r:
        return json.loads(r.read())["versions"][0]

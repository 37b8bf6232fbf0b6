"""Shared test machinery: root gating, tracer processes, leak snapshots."""
from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from vmtier import proxy_on_host, pytest_runtest_logreport, pytest_terminal_summary  # noqa: F401 (hooks)

ROOT = Path(__file__).resolve().parent.parent
IS_ROOT = os.geteuid() == 0
READY = "Hit Ctrl-C to end."


def pytest_collection_modifyitems(config, items):
    # Kernel tests may skip only when not root; in CI (root) they run.
    skip = pytest.mark.skip(reason="needs root: loads BPF programs into the kernel")
    for item in items:
        if ("kernel" in item.keywords or "vm" in item.keywords) and not IS_ROOT:
            item.add_marker(skip)
    proxy_on_host([i for i in items if IS_ROOT])
    # README fields are checked against the output of every other kernel test
    last = [i for i in items if i.module.__name__.endswith("test_readme_fields")]
    items[:] = [i for i in items if i not in last] + last


class TracerProcess:
    """`python -m tracers ARGS` in the background, started when attached."""

    def __init__(self, args: list[str], ready_timeout: float = 90.0, env: dict | None = None,
                 prefix: list[str] | None = None):
        # prefix: e.g. netns_pair.exec(ns) to run inside a network namespace
        # (`ip netns exec` execs the command, so the pid and signals are the tracer's)
        self.args = args
        self._out = tempfile.TemporaryFile(mode="w+")
        self._err = tempfile.NamedTemporaryFile(mode="w+", delete=False)
        self.proc = subprocess.Popen([*(prefix or []), sys.executable, "-m", "tracers", *args], cwd=ROOT,
                                     stdout=self._out, stderr=self._err,
                                     env=dict(os.environ, **(env or {})))
        deadline = time.monotonic() + ready_timeout
        while READY not in self.stderr:
            if self.proc.poll() is not None:
                raise AssertionError(f"tracer {args} exited {self.proc.returncode}: {self.stderr}")
            if time.monotonic() > deadline:
                self.proc.kill()
                raise AssertionError(f"tracer {args} not ready after {ready_timeout}s: {self.stderr}")
            time.sleep(0.05)

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def stderr(self) -> str:
        return Path(self._err.name).read_text()

    @property
    def stdout(self) -> str:
        self._out.seek(0)
        return self._out.read()

    def stop(self, sig: int = signal.SIGINT, timeout: float = 30.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"tracer {self.args} ignored signal {sig}: {self.stderr}")

    def wait(self, timeout: float = 60.0) -> int:
        return self.proc.wait(timeout)

    def json_lines(self) -> list[dict]:
        return [json.loads(line) for line in self.stdout.splitlines() if line.startswith("{")]

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        os.unlink(self._err.name)
        if "--json" in self.args:  # what real output carried, for test_readme_fields
            names = SEEN_FIELDS.setdefault(self.args[0], set())
            for line in self.stdout.splitlines():
                if line.startswith("{"):
                    with contextlib.suppress(ValueError):
                        names |= json_keys(json.loads(line))


SEEN_FIELDS: dict[str, set[str]] = {}  # tracer -> every JSON key its runs printed


def pytest_sessionfinish(session):
    # BPFWATCH_SEEN_FIELDS=FILE keeps them, to fix README sections without a rerun
    if os.environ.get("BPFWATCH_SEEN_FIELDS"):
        Path(os.environ["BPFWATCH_SEEN_FIELDS"]).write_text(
            json.dumps({k: sorted(v) for k, v in SEEN_FIELDS.items()}, indent=1))


def json_keys(value) -> set[str]:
    if isinstance(value, dict):
        return set(value).union(*(json_keys(v) for v in value.values()))
    if isinstance(value, list):
        return set().union(*(json_keys(v) for v in value))
    return set()


@pytest.fixture
def tracer():
    """Factory: tracer(args) -> TracerProcess; all are killed at teardown."""
    started = []

    def start(args, **kw) -> TracerProcess:
        proc = TracerProcess(list(args), **kw)
        started.append(proc)
        return proc
    yield start
    for proc in started:
        proc.close()


def bpf_objects(names=None) -> dict[str, set]:
    """Our programs (named on_*) and all links, by id, from bpftool.

    names: only programs with these names and the links to them, so that
    tracers other tests load at the same time don't count as leaks."""
    out = {}
    progs = set()
    names = None if names is None else {n[:15] for n in names}  # BPF_OBJ_NAME_LEN
    for kind in ("prog", "link"):
        text = subprocess.run(["bpftool", "-j", kind, "show"], capture_output=True, text=True).stdout
        items = json.loads(text or "[]")
        if kind == "prog":
            progs = {i["id"] for i in items if str(i.get("name", "")).startswith("on_")
                     and (names is None or i.get("name") in names)}
            out[kind] = progs
        else:
            out[kind] = {i["id"] for i in items if names is None or i.get("prog_id") in progs}
    return out


def probe_events() -> str:
    """What kprobe_events and uprobe_events hold (tracefs entries leak on SIGKILL)."""
    text = ""
    for name in ("kprobe_events", "uprobe_events"):
        path = Path("/sys/kernel/tracing") / name
        if path.exists():
            text += path.read_text()
    return text


def wait_gone(snapshot_before: dict, timeout: float = 10.0, names=None) -> dict:
    """Leaked objects: ours that remain after `timeout` (the kernel frees
    programs asynchronously after their last fd closes)."""
    deadline = time.monotonic() + timeout
    while True:
        now = bpf_objects(names)
        leaked = {k: now[k] - snapshot_before[k] for k in now}
        if not any(leaked.values()) or time.monotonic() > deadline:
            return leaked
        time.sleep(0.2)


def unique_name(prefix: str) -> str:
    """A comm-sized (<= 15 bytes) name no other process has."""
    return f"{prefix}{os.getpid() % 10000:04d}{int(time.time() * 1000) % 1000:03d}"[:15]


class NetnsPair:
    """Two network namespaces joined by a veth pair, with IPv4 and IPv6.

    a (veth-a, 10.77.N.1, fd77:N::1) <-> b (veth-b, 10.77.N.2, fd77:N::2)
    """

    def __init__(self, tag: str, subnet: int):
        self.a, self.b = f"bpfw-a-{tag}", f"bpfw-b-{tag}"
        self.if_a, self.if_b = "veth-a", "veth-b"
        self.ip_a, self.ip_b = f"10.77.{subnet}.1", f"10.77.{subnet}.2"
        self.ip6_a, self.ip6_b = f"fd77:{subnet}::1", f"fd77:{subnet}::2"
        for ns in (self.a, self.b):
            sh(f"ip netns add {ns}")
        sh(f"ip link add {self.if_a} netns {self.a} type veth peer name {self.if_b} netns {self.b}")
        for ns, dev, ip4, ip6 in ((self.a, self.if_a, self.ip_a, self.ip6_a),
                                  (self.b, self.if_b, self.ip_b, self.ip6_b)):
            sh(f"ip -n {ns} addr add {ip4}/24 dev {dev}")
            sh(f"ip -n {ns} addr add {ip6}/64 dev {dev} nodad")
            sh(f"ip -n {ns} link set {dev} up")
            sh(f"ip -n {ns} link set lo up")
        # Static neighbours: no ARP/ND packets to blur exact packet counts.
        mac = {ns: json.loads(subprocess.run(["ip", "-j", "-n", ns, "link", "show", dev],
                                             capture_output=True, text=True).stdout)[0]["address"]
               for ns, dev in ((self.a, self.if_a), (self.b, self.if_b))}
        for ns, dev, peer, ip4, ip6 in ((self.a, self.if_a, self.b, self.ip_b, self.ip6_b),
                                        (self.b, self.if_b, self.a, self.ip_a, self.ip6_a)):
            sh(f"ip -n {ns} neigh replace {ip4} lladdr {mac[peer]} dev {dev} nud permanent")
            sh(f"ip -n {ns} neigh replace {ip6} lladdr {mac[peer]} dev {dev} nud permanent")

    def exec(self, ns: str, *cmd: str) -> list[str]:
        """argv prefix that runs cmd inside namespace ns."""
        return ["ip", "netns", "exec", ns, *cmd]

    def run(self, ns: str, command: str, **kw) -> subprocess.CompletedProcess:
        return subprocess.run(self.exec(ns, "sh", "-c", command), capture_output=True,
                              text=True, **kw)

    def close(self) -> None:
        for ns in (self.a, self.b):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def sh(command: str) -> None:
    proc = subprocess.run(command, shell=True, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{command}: {proc.stderr.strip()}")


_subnets = iter(range(1, 250))


@pytest.fixture
def netns_pair():
    """A fresh veth-joined namespace pair, destroyed after the test."""
    pair = NetnsPair(f"{os.getpid() % 100000}-{next(_subnets)}", next(_subnets))
    yield pair
    pair.close()

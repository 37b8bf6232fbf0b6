"""Capabilities, not uid 0: tracers and the exporter run as uid 65534 with
exactly the capabilities README's table lists, a missing one is named in one
line, and the exporter keeps none once attached."""
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from conftest import ROOT, TracerProcess
from tracers.registry import tracer_classes
from tracers.runtime.privileges import NEEDS, parse_mask

pytestmark = pytest.mark.kernel

TRACEPOINT = NEEDS["tracepoint"]   # CAP_BPF, CAP_PERFMON, CAP_DAC_READ_SEARCH
TC = NEEDS["tc"]                   # CAP_BPF, CAP_NET_ADMIN
# The exporter's default tracers use tracepoints and raw tracepoints.
EXPORTER = NEEDS["tracepoint"] | NEEDS["raw_tracepoint"]


def as_nobody(caps) -> list[str]:
    """argv prefix: uid/gid 65534, no groups, these capabilities (ambient, so
    they survive the exec of a non-root program) and no others."""
    plus = ",".join(f"+{c}" for c in sorted(caps))
    return ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
            f"--inh-caps=-all{',' + plus if plus else ''}", *([f"--ambient-caps={plus}"] if plus else [])]


def bpfwatch(prefix, *args, timeout=90):
    return subprocess.run([*prefix, sys.executable, "-m", "tracers", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)


def test_the_documented_sets():
    assert TRACEPOINT == {"bpf", "perfmon", "dac_read_search"}
    assert NEEDS["raw_tracepoint"] == {"bpf", "perfmon", "dac_read_search"}
    assert TC == {"bpf", "net_admin"}


CHILD = """
import ctypes, sys
libc = ctypes.CDLL(None)
sys.stdin.readline()
for _ in range(int(sys.argv[1])):
    libc.sched_get_priority_max(0)
"""


def test_tracepoint_tracer_counts_exactly_as_nobody():
    child = subprocess.Popen([sys.executable, "-c", CHILD, "37"], stdin=subprocess.PIPE, text=True)
    run = TracerProcess(["syscount", "--json", "--hook", "tracepoint", "-p", str(child.pid)],
                        prefix=as_nobody(TRACEPOINT))
    try:
        assert parse_mask(status(run.pid)["CapEff"]) == TRACEPOINT
        assert status(run.pid)["Uid"].split()[:2] == ["65534", "65534"]
        child.stdin.write("go\n")
        child.stdin.close()
        assert child.wait(30) == 0
        assert run.stop() == 0
    finally:
        run.close()
    rows = [r for line in run.json_lines() for r in line["syscalls"]
            if r["syscall"] == "sched_get_priority_max"]
    assert sum(r["count"] for r in rows) == 37


def ping(pair, count):
    proc = pair.run(pair.a, f"ping -n -q -c {count} -i 0.01 -W 2 {pair.ip_b}", timeout=60)
    assert f"{count} packets transmitted, {count} received" in proc.stdout, proc.stdout


def test_tc_tracer_counts_exactly_as_nobody(netns_pair):
    pair = netns_pair
    run = TracerProcess(["tctraffic", pair.if_a, "--json"], prefix=pair.exec(pair.a) + as_nobody(TC))
    try:
        assert parse_mask(status(run.pid)["CapEff"]) == TC
        ping(pair, 23)
        time.sleep(0.2)
        assert run.stop() == 0, run.stderr
    finally:
        run.close()
    icmp = [r for line in run.json_lines() for r in line["traffic"]
            if r["family"] == "IPv4" and r["proto"] == "icmp"]
    assert {r["direction"]: r["packets"] for r in icmp} == {"egress": 23, "ingress": 23}


@pytest.mark.parametrize("argv, caps", [
    (["syscount", "-d", "1"], TRACEPOINT),
    (["execsnoop", "-d", "1"], TRACEPOINT | NEEDS["raw_tracepoint"]),
    (["exporter", "--check"], EXPORTER),
])
def test_a_missing_capability_is_named_in_one_line(argv, caps):
    for missing in sorted(caps):
        proc = bpfwatch(as_nobody(caps - {missing}), *argv)
        assert proc.returncode == 1 and proc.stdout == "", proc.stderr
        assert proc.stderr.count("\n") == 1 and f"CAP_{missing.upper()}" in proc.stderr, proc.stderr
        assert "Traceback" not in proc.stderr and "root" not in proc.stderr.split(",")[0]


def test_exporter_check_as_nobody():
    proc = bpfwatch(as_nobody(EXPORTER), "exporter", "--check")
    assert proc.returncode == 0, proc.stderr
    rows = [line.split() for line in proc.stdout.splitlines() if line and not line.startswith((" ", "TRACER"))]
    attached = [r[0] for r in rows if r[-1] == "attached"]
    defaults = sorted(n for n, t in tracer_classes().items() if t.spec.exporter_default)
    assert sorted(attached) == defaults and "NOT" not in proc.stdout, proc.stdout


def status(pid) -> dict:
    with open(f"/proc/{pid}/status") as f:
        return dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)


@pytest.mark.parametrize("who", ["nobody", "root"])
def test_exporter_keeps_no_capability_once_attached(who):
    prefix = as_nobody(EXPORTER) if who == "nobody" else []
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    exporter = TracerProcess(["exporter", "--listen", f"127.0.0.1:{port}"], prefix=prefix)
    try:
        for tid in os.listdir(f"/proc/{exporter.pid}/task"):  # capabilities are per thread: the serving thread too
            caps = status(f"{exporter.pid}/task/{tid}")
            assert (caps["CapEff"], caps["CapPrm"], caps["CapAmb"]) == ("0" * 16,) * 3, (tid, caps)
        before = execs_total(port)
        subprocess.run(["/bin/true"], check=True)
        assert execs_total(port) >= before + 1  # maps are still read
        assert exporter.stop() == 0
    finally:
        exporter.close()


def execs_total(port: int) -> float:
    """bpfwatch_execs_total summed over its series (none before the first exec), from a scrape."""
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    assert "# TYPE bpfwatch_execs_total counter" in body, body[:1000]
    return sum(map(float, re.findall(r"^bpfwatch_execs_total(?:\{[^}]*\})? (\S+)$", body, re.M)))

"""Forced hook alternatives on the stock kernel: the kprobe (and fexit) paths
give the same records as the tracepoint path on the same workload, and
struct offsets from BTF give the same answers as matching headers.

Every tracer of a comparison runs at once on one workload (their compiles
overlap), and records are compared without their timestamps."""
import importlib.util
import json
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from conftest import ROOT, unique_name
from vmtools import start_all

pytestmark = pytest.mark.vm
O_LARGEFILE = 0o100000


def records(run, drop=("time", "duration_us", "latency_us")):
    return [{k: v for k, v in r.items() if k not in drop}
            for r in run.json_lines() if "summary" not in r]


def canonical(recs):
    return sorted(recs, key=lambda r: json.dumps(r, sort_keys=True))


def stop_all(runs):
    for run in runs:
        assert run.stop(signal.SIGINT) == 0, run.stderr


def test_execsnoop_kprobe_on_headers_and_tracepoint_on_btf_agree(tracer, tmp_path):
    program = tmp_path / unique_name("vmx")
    shutil.copy("/bin/true", program)
    runs = start_all(tracer, [
        ["execsnoop", "--json", "--hook", "tracepoint", "--offsets", "btf"],
        ["execsnoop", "--json", "--hook", "kprobe", "--offsets", "headers"],
    ])
    assert "via tracepoint" in runs[0].stderr and "via kprobe" in runs[1].stderr
    shell = subprocess.Popen(["sh", "-c", f'for i in 1 2 3 4 5; do "{program}" a "b c"; done; '
                                          f'"{program}.missing" 2>/dev/null; true'])
    assert shell.wait(60) == 0
    time.sleep(0.5)
    stop_all(runs)
    ours = [[r for r in records(run) if r["filename"].startswith(str(program))] for run in runs]
    assert len(ours[0]) == 6, ours[0]
    assert ours[0] == ours[1]
    # the offsets are not just alike but right: every exec's parent is the shell
    assert {r["ppid"] for r in ours[0]} == {shell.pid}
    assert [r["ret"] for r in ours[0]] == [0] * 5 + [-2]


def test_opensnoop_kprobe_fexit_and_tracepoint_agree(tracer):
    tmp_path = Path(tempfile.mkdtemp(prefix="/tmp/bwvm"))  # --path-prefix: at most 32 bytes
    runs = start_all(tracer, [
        ["opensnoop", "--json", "--hook", hook, "--path-prefix", str(tmp_path)]
        for hook in ("tracepoint", "fexit", "kprobe")])
    (tmp_path / "there").write_text("x")
    opener = ("import os, sys\nd = sys.argv[1]\nfor i in range(7):\n"
              "    os.close(os.open(d + '/there', os.O_RDONLY))\n"
              "for i in range(3):\n    try: os.open(d + '/missing', os.O_RDONLY)\n"
              "    except FileNotFoundError: pass\n")
    work = subprocess.Popen([sys.executable, "-c", opener, str(tmp_path)])
    assert work.wait(60) == 0
    time.sleep(0.5)
    stop_all(runs)
    # fexit on do_sys_openat2 cannot tell which open syscall it was, and it
    # sees the flags after the kernel added O_LARGEFILE (64-bit: always)
    got = [[dict(r, flags=r["flags"] & ~O_LARGEFILE)
            for r in records(run, drop=("time", "call", "flags_text")) if r["pid"] == work.pid]
           for run in runs]
    assert len(got[0]) == 10 and sum(r["ret"] < 0 for r in got[0]) == 3, got[0]
    assert got[0] == got[1] == got[2]


def _tcp_workload():
    path = Path(ROOT, "tests", "kernel", "test_tcp_tracers.py")
    spec = importlib.util.spec_from_file_location("tcp_workload", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_tcp_workload(netns_pair, port):
    w, p = _tcp_workload(), netns_pair
    server = subprocess.Popen(p.exec(p.b, sys.executable, "-c", w.SERVER, str(port), str(w.N4 + w.N6),
                                     p.ip_b, p.ip6_b, unique_name("srv")), stdout=subprocess.PIPE, text=True)
    server.stdout.readline()
    client = subprocess.run(p.exec(p.a, sys.executable, "-c", w.CLIENT, str(port), str(w.N4), str(w.N6),
                                   p.ip_b, p.ip6_b, unique_name("cli")),
                            capture_output=True, text=True, timeout=300)
    assert client.returncode == 0, client.stderr
    assert server.wait(60) == 0
    time.sleep(1)  # the last closes run in softirq after the client exits
    return w.N4 + w.N6


def test_tcplife_kprobe_on_headers_and_tracepoint_on_btf_agree(tracer, netns_pair):
    # The kprobe never sees a child that loses a handshake race (it dies
    # without tcp_set_state); the tracepoint does and must not report it.
    port = random.randrange(20000, 30000, 2)
    life = ["tcplife", "--json", "--lport", str(port)]
    runs = start_all(tracer, [[*life, "--hook", "tracepoint", "--offsets", "btf"],
                              [*life, "--hook", "kprobe", "--offsets", "headers"]])
    n = run_tcp_workload(netns_pair, port)
    stop_all(runs)
    tp_btf, kprobe = [canonical(records(run)) for run in runs]
    assert len(tp_btf) == n and tp_btf == kprobe
    # exact bytes, read at BTF offsets and at header offsets alike
    assert sorted((r["bytes_sent"], r["bytes_received"]) for r in tp_btf if r["bytes_received"]) == \
        [(500 * k, 1000 * k) for k in range(1, n + 1)], tp_btf


def test_tcpconnect_kprobe_and_tracepoint_agree(tracer, netns_pair):
    port = random.randrange(20000, 30000, 2)
    conn = ["tcpconnect", "--json", "--rport", str(port), "--rport", str(port + 1)]
    runs = start_all(tracer, [[*conn, "--hook", "tracepoint"], [*conn, "--hook", "kprobe"]])
    n = run_tcp_workload(netns_pair, port)
    stop_all(runs)
    tracepoint, kprobe = [canonical(records(run)) for run in runs]
    assert len(tracepoint) == n + 1 and tracepoint == kprobe  # one refused
    assert sum(r["result"] == "ECONNREFUSED" for r in kprobe) == 1


def test_missing_btf_field_makes_an_alternative_ineligible_with_matching_headers_it_is_not():
    from tracers.runtime import get_probe, plan
    from tracers.spec import Alternative, Hook, TracerSpec
    alt = Alternative("tracepoint", (Hook("tracepoint", "sched:sched_process_exec", "on_x"),),
                      btf_fields={"OFF_X": ("task_struct", "no_such_field")})
    spec = TracerSpec(name="madeup", summary="", c_file="execsnoop.bpf.c", alternatives=(alt,))
    probe = get_probe()
    assert probe.headers.mode == "matching"
    refused = plan(spec, probe, offsets_from="btf")
    assert not refused.usable
    assert "no_such_field" in refused.why_not() and "task_struct" in refused.why_not()
    assert plan(spec, probe).usable  # matching headers: offsetof() at compile time decides

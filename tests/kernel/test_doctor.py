"""doctor on the host kernel: every hook kind is tried with a two-instruction
program through bpf() (no compiler, no headers), the answers are this
kernel's, a refusal names its step, and nothing is left behind."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT

pytestmark = pytest.mark.kernel

# The host kernel (../shared/KERNEL.md): no kprobes, trampolines refused.
HOST = {"kprobe": False, "kretprobe": False, "fentry": False, "lsm": False,
        "tracepoint": True, "raw_tracepoint": True, "uprobe": True, "perf_event": True,
        "ringbuf": True, "tc": True, "tcx": True, "xdp": True, "socket_filter": True}


def probe_leftovers() -> tuple[list, list]:
    progs = json.loads(subprocess.run(["bpftool", "-j", "prog", "show"], capture_output=True,
                                      text=True).stdout or "[]")
    return ([p["id"] for p in progs if p.get("name") == "bpfwatch_probe"],
            sorted(p.name for p in Path("/run/netns").glob("bpfwatch-probe-*")))


def test_doctor_tries_each_hook_kind_and_leaves_nothing():
    assert probe_leftovers() == ([], [])
    proc = subprocess.run([sys.executable, "-m", "tracers", "doctor", "--json"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    features = json.loads(proc.stdout)["features"]
    assert {name: features[name]["available"] for name in HOST} == HOST, features
    # a refusal names the step the kernel refused, in one line (bpf is an
    # active LSM here: the trampoline refusal is what stops it)
    assert {name: features[name]["detail"] for name in ("kprobe", "fentry", "lsm")} == {
        "kprobe": "no kprobe PMU and no kprobe_events (CONFIG_KPROBES not set)",
        "fentry": "loading a TRACING program: Operation not permitted",
        "lsm": "no trampolines: loading a TRACING program: Operation not permitted"}
    assert probe_leftovers() == ([], [])

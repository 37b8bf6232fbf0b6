"""The stock-kernel tier itself: the guest is the kernel we think it is."""
import json
import subprocess
import sys

import pytest

from conftest import ROOT

pytestmark = pytest.mark.vm


def test_doctor_reports_kprobes_fentry_and_matching_headers():
    proc = subprocess.run([sys.executable, "-m", "tracers", "doctor", "--json"], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["kernel"].startswith("6.1.")
    assert report["headers"]["mode"] == "matching"
    # Debian 12's kernel: everything but tcx (6.6+); BPF LSM is built in and active
    stock = {name: name != "tcx" for name in (
        "kprobe", "kretprobe", "fentry", "lsm", "tracepoint", "raw_tracepoint", "uprobe",
        "perf_event", "ringbuf", "tc", "tcx", "xdp", "socket_filter")}
    assert {name: report["features"][name]["available"] for name in stock} == stock, report["features"]

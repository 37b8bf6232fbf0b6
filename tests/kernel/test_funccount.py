"""funccount on the host kernel: uprobes and tracepoints (no kprobes here)."""
import signal
import subprocess
import sys
import time

import pytest

import funclib
from conftest import bpf_objects, probe_events, wait_gone

pytestmark = pytest.mark.kernel


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    return funclib.build(tmp_path_factory.mktemp("funclib"))


def counts(run) -> dict:
    out: dict = {}
    for line in run.json_lines():
        for row in line["counts"]:
            out[row["probe"]] = out.get(row["probe"], 0) + row["count"]
    return out


def test_uprobe_counts_exactly_43_calls_and_leaves_nothing_after_sigkill(tracer, built):
    lib, prog = built
    before, events_before = bpf_objects(["on_count"]), probe_events()
    work = funclib.start(prog, target=43, other=7, naps=2)
    run = tracer(["funccount", "--json", f"{lib}:bpfw_*", "-p", str(work.pid), "0.5"])
    assert "5 of 5 targets" in run.stderr  # target, other, nap, recurse, escape
    other = funclib.start(prog, target=5)  # not the traced pid
    funclib.go(work)
    funclib.go(other)
    deadline = time.monotonic() + 10
    while counts(run).get(f"{lib}:bpfw_nap") != 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(0.6)
    assert counts(run) == {f"{lib}:bpfw_target": 43, f"{lib}:bpfw_other": 7, f"{lib}:bpfw_nap": 2}
    assert run.stop(signal.SIGKILL) == -9
    assert wait_gone(before, names=["on_count"]) == {"prog": set(), "link": set()}
    assert probe_events() == events_before


def test_library_by_name_and_tracepoint_patterns(tracer):
    # libc by name (uprobe) and syscall tracepoints, both on a known workload
    child = ("import os, sys\nsys.stdin.readline()\n"
             "for _ in range(17): os.getppid()\nfor _ in range(5): os.getpgid(0)\n")
    work = subprocess.Popen([sys.executable, "-c", child], stdin=subprocess.PIPE, text=True)
    runs = [tracer(["funccount", "--json", "-p", str(work.pid), "t:syscalls:sys_enter_getp*"]),
            tracer(["funccount", "--json", "-p", str(work.pid), "c:getppid"])]
    work.communicate("go\n", timeout=30)
    for run in runs:
        assert run.stop() == 0, run.stderr
    assert counts(runs[0]) == {"syscalls:sys_enter_getppid": 17, "syscalls:sys_enter_getpgid": 5}
    (probe, n), = counts(runs[1]).items()
    assert probe.endswith(":getppid") and "libc" in probe and n == 17


@pytest.mark.parametrize("argv, message", [
    (["t:*:*"], "more than --max-probes 1000"),
    (["--max-probes", "3", "t:syscalls:sys_enter_*"], "more than --max-probes 3"),
    (["t:nosuch:thing"], "nothing matches 't:nosuch:thing'"),
    (["nosuchlib:f"], "no library or executable 'nosuchlib'"),
    (["--hook", "kprobe", "c:malloc"], "--hook kprobe does not fit user pattern"),
    (["vfs read"], "bad kernel function pattern"),
    (["--hook", "kprobe", "vfs_read"], "no usable hook"),
])
def test_bad_input_is_one_line(argv, message):
    proc = subprocess.run([sys.executable, "-m", "tracers", "funccount", *argv],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert proc.stderr.count("\n") == 1 and message in proc.stderr, proc.stderr


def test_aliases_of_one_function_are_probed_once_and_named_together(tracer):
    # libc's getppid is also __getppid, __GI_getppid and __GI___getppid: one
    # address, one probe, one row of 17 (not four rows of 17)
    child = "import os, sys\nsys.stdin.readline()\nfor _ in range(17): os.getppid()\n"
    work = subprocess.Popen([sys.executable, "-c", child], stdin=subprocess.PIPE, text=True)
    run = tracer(["funccount", "--json", "-p", str(work.pid), "c:*getppid"])
    work.communicate("go\n", timeout=30)
    assert run.stop() == 0, run.stderr
    got = counts(run)
    assert sum(got.values()) == 17 and len(got) == 1, got
    (probe,) = got
    names = probe.rsplit(":", 1)[1].split("|")
    assert names[0] == "getppid" and sorted(names) == \
        sorted(["getppid", "__getppid", "__GI_getppid", "__GI___getppid"]), probe
    assert run.json_lines()[-1]["probes"] == 1

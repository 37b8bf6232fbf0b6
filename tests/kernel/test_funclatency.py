"""funclatency on the host kernel: the uprobe+uretprobe variant."""
import subprocess
import sys

import pytest

import funclib
from conftest import bpf_objects, probe_events, wait_gone

pytestmark = pytest.mark.kernel


def test_histogram_total_is_the_29_calls_made(tracer, tmp_path):
    lib, prog = funclib.build(tmp_path)
    before, events_before = bpf_objects(["on_entry", "on_return"]), probe_events()
    work = funclib.start(prog, naps=29, target=3)
    run = tracer(["funclatency", "--json", "-u", "-p", str(work.pid), f"{lib}:bpfw_nap"])
    funclib.go(work)
    assert run.stop() == 0, run.stderr
    (last,) = run.json_lines()
    assert (last["total"], last["unit"], last["function"]) == (29, "usecs", f"{lib}:bpfw_nap")
    # each nap sleeps 200 us: every call lands in [128, 256) us or above
    assert sum(b["count"] for b in last["buckets"]) == 29
    assert all(b["low"] >= 128 for b in last["buckets"]), last
    assert wait_gone(before, names=["on_entry", "on_return"]) == {"prog": set(), "link": set()}
    assert probe_events() == events_before


@pytest.mark.parametrize("argv, message", [
    (["vfs_*"], "no wildcards"),
    (["--hook", "uprobe", "vfs_read"], "--hook uprobe does not fit kernel function"),
    (["vfs_read"], "no usable hook"),
    (["-u", "-m", "c:malloc"], "not allowed with argument"),
])
def test_bad_input_is_one_line(argv, message):
    proc = subprocess.run([sys.executable, "-m", "tracers", "funclatency", *argv],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert proc.stderr.count("\n") == 1 and message in proc.stderr, proc.stderr


def test_recursive_calls_are_each_timed_12_calls_at_depth_4(tracer, tmp_path):
    # 3 outer calls of bpfw_recurse(4): 12 calls, up to 4 nested on one thread
    lib, prog = funclib.build(tmp_path)
    work = funclib.start(prog, recursions=3, depth=4)
    run = tracer(["funclatency", "--json", "-p", str(work.pid), f"{lib}:bpfw_recurse"])
    funclib.go(work)
    assert run.stop() == 0, run.stderr
    (last,) = run.json_lines()
    assert (last["total"], last["depth_overflows"]) == (12, 0)


def test_nesting_deeper_than_the_stack_is_counted_not_mistimed(tracer, tmp_path):
    # one call chain 40 deep: the deepest 40 - MAX_DEPTH levels are not timed
    from tracers.tools.funclatency import MAX_DEPTH
    lib, prog = funclib.build(tmp_path)
    work = funclib.start(prog, recursions=1, depth=40)
    run = tracer(["funclatency", "--json", "-p", str(work.pid), f"{lib}:bpfw_recurse"])
    funclib.go(work)
    assert run.stop() == 0, run.stderr
    (last,) = run.json_lines()
    assert (MAX_DEPTH, last["total"], last["depth_overflows"]) == (32, 32, 8)


def test_calls_left_by_longjmp_are_dropped_not_timing_later_calls(tracer, tmp_path):
    # 7 chains 5 deep left by longjmp: 35 calls that never return, more than
    # the 32 levels kept. Then 4 chains 5 deep that return: 20 timed calls.
    lib, prog = funclib.build(tmp_path)
    work = funclib.start(prog, escapes=7, escape_depth=5, returns=4)
    run = tracer(["funclatency", "--json", "-p", str(work.pid), f"{lib}:bpfw_escape"])
    funclib.go(work)
    assert run.stop() == 0, run.stderr
    (last,) = run.json_lines()
    assert (last["total"], last["abandoned"], last["depth_overflows"]) == (20, 35, 0)


def test_an_unknown_function_is_one_line_with_one_prefix():
    proc = subprocess.run([sys.executable, "-m", "tracers", "funclatency", "c:nosuchfn_xyz"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert proc.stderr.count("\n") == 1 and proc.stderr.count("funclatency:") == 1, proc.stderr
    assert "nosuchfn_xyz" in proc.stderr

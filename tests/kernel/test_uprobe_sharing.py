"""Several uprobes on one function (issue 16, item 5): funclatency and
funccount on libc's getppid at once, in either order, both exact, and
nothing left in tracefs or the kernel after SIGKILL."""
import signal
import subprocess
import sys
import time

import pytest

from conftest import bpf_objects, probe_events, wait_gone

pytestmark = pytest.mark.kernel
PROGRAMS = ["on_entry", "on_return", "on_count"]
CHILD = "import os, sys\nsys.stdin.readline()\nfor _ in range(17): os.getppid()\n"


def wait_for(check, timeout=15.0):
    deadline = time.monotonic() + timeout
    while not check() and time.monotonic() < deadline:
        time.sleep(0.1)
    return check()


@pytest.mark.parametrize("first", ["funclatency", "funccount"])
def test_funclatency_and_funccount_share_getppid_then_leave_nothing(tracer, first):
    before, events_before = bpf_objects(PROGRAMS), probe_events()
    work = subprocess.Popen([sys.executable, "-c", CHILD], stdin=subprocess.PIPE, text=True)
    argv = {"funclatency": ["funclatency", "--json", "-p", str(work.pid), "c:getppid", "0.5"],
            "funccount": ["funccount", "--json", "-p", str(work.pid), "c:getppid", "0.5"]}
    order = [first] + [name for name in argv if name != first]
    runs = {name: tracer(argv[name]) for name in order}
    assert "skipped" not in runs["funccount"].stderr, runs["funccount"].stderr
    assert probe_events() == events_before  # no tracefs fallback while running
    work.communicate("go\n", timeout=30)

    def calls():
        lat = sum(line["total"] for line in runs["funclatency"].json_lines())
        cnt = sum(row["count"] for line in runs["funccount"].json_lines() for row in line["counts"])
        return lat, cnt
    assert wait_for(lambda: calls() == (17, 17)), calls()
    time.sleep(0.6)
    assert calls() == (17, 17)
    for run in runs.values():
        assert run.stop(signal.SIGKILL) == -9
    assert wait_gone(before, names=PROGRAMS) == {"prog": set(), "link": set()}
    assert probe_events() == events_before

"""Issue 16 on the stock 6.1 kernel, where it behaves differently:
tcp:tcp_retransmit_skb has no `err` there and fires only for sent
retransmits (the kprobe alternative sees failed attempts by the return
value), BCC's own uprobes would clash with ours on one function, and
there is no sock:sk_data_ready to name a SO_REUSEPORT listener."""
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import probe_events
from vmtools import READY_TIMEOUT, start_all

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "kernel"))
from test_tcp_exact import provoke_failed_retransmits, reuseport_split  # noqa: E402 (one workload, both tiers)

pytestmark = pytest.mark.vm


def records(run):
    return [r for r in run.json_lines() if "summary" not in r]


def test_tcpretrans_tracepoint_and_kprobe_count_what_was_sent(tracer, netns_pair):
    # RetransSegs 5, TCPRetransFail 2: 3 sent. The 6.1 tracepoint knows no
    # failed attempts (null); the kprobe pair reads 2 from the return value.
    p, port = netns_pair, 36000
    runs = start_all(tracer, [["tcpretrans", "--json", "--rport", str(port), "--hook", hook]
                              for hook in ("tracepoint", "kprobe")])
    provoke_failed_retransmits(p, port, timeout=120)
    for run in runs:
        assert run.stop() == 0, run.stderr
    assert [len(records(run)) for run in runs] == [3, 3]
    assert [run.json_lines()[-1]["summary"]["failed_attempts"] for run in runs] == [None, 2]


@pytest.mark.parametrize("first", ["funclatency", "funccount"])
def test_funclatency_and_funccount_share_one_uprobe_then_leave_nothing(tracer, first):
    # Either order: BCC's own attach (funccount first, once) clashed on the
    # ref_ctr_offset, and the other order fell back to tracefs.
    events_before = probe_events()
    child = "import os, sys\nsys.stdin.readline()\nfor _ in range(17): os.getppid()\n"
    work = subprocess.Popen([sys.executable, "-c", child], stdin=subprocess.PIPE, text=True)
    argv = {"funclatency": ["funclatency", "--json", "-p", str(work.pid), "c:getppid", "1"],
            "funccount": ["funccount", "--json", "-p", str(work.pid), "c:*getppid", "1"]}
    order = [first] + [name for name in argv if name != first]
    started = {name: tracer(argv[name], ready_timeout=READY_TIMEOUT) for name in order}
    runs = [started["funclatency"], started["funccount"]]
    assert probe_events() == events_before  # no tracefs fallback while running
    assert "skipped" not in runs[1].stderr, runs[1].stderr
    work.communicate("go\n", timeout=60)

    def calls():
        lat = sum(line["total"] for line in runs[0].json_lines())
        cnt = sum(row["count"] for line in runs[1].json_lines() for row in line["counts"])
        return lat, cnt
    deadline = time.monotonic() + 60
    while calls() != (17, 17) and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(1.5)
    assert calls() == (17, 17)
    assert runs[1].json_lines()[-1]["probes"] == 1  # getppid and its aliases: one address
    for run in runs:
        assert run.stop(signal.SIGKILL) == -9
    assert probe_events() == events_before


def test_reuseport_accepts_on_61_go_through_the_kprobe_to_their_listener(tracer, netns_pair):
    # 6.1 has no sock:sk_data_ready: the planner takes the kretprobe on
    # inet_csk_accept (in the accepting process), not the by-port fallback.
    got, stderr = reuseport_split(tracer, netns_pair, ready_timeout=READY_TIMEOUT)
    assert "via kprobe..." in stderr
    assert got == [[7, 7], [5, 5]]

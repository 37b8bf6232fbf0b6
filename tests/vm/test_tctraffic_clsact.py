"""tctraffic on the stock 6.1 kernel, which has no tcx: the planner picks the
clsact alternative, it counts exactly, and a restart removes what a
SIGKILLed instance left (its filters and, at exit, the qdisc it made)."""
import signal
import sys

import pytest

from conftest import ROOT
from vmtools import READY_TIMEOUT

sys.path.insert(0, str(ROOT / "tests" / "kernel"))
from test_tctraffic import PING4, PORT_X, UDP4, Receiver, ipv4, ping, results, send, start  # noqa: E402
from test_tctraffic_lifecycle import ours, tc_state  # noqa: E402

pytestmark = pytest.mark.vm


def test_no_tcx_here_so_tctraffic_plans_clsact():
    from tracers.registry import tracer_class
    from tracers.runtime import get_probe, plan
    tcx = get_probe().feature("tcx")
    assert not tcx.available and "BPF_LINK_CREATE" in tcx.detail, tcx
    result = plan(tracer_class("tctraffic").spec, get_probe())
    assert result.alternative.name == "clsact"
    assert [name for name, _ in result.rejected] == ["tcx"]


def test_clsact_counts_exactly_and_a_restart_cleans_up_after_sigkill(tracer, netns_pair):
    pair = netns_pair
    before = tc_state(pair)
    first = start(tracer, pair, ready_timeout=READY_TIMEOUT)
    assert "via clsact" in first.stderr
    egress, ingress = ours(first.pid, made_qdisc=True)
    assert first.stop(signal.SIGKILL) == -9
    killed = tc_state(pair)
    assert (killed["egress"], killed["ingress"]) == (egress, ingress)  # the kill left them

    second = start(tracer, pair, ready_timeout=READY_TIMEOUT)
    egress, ingress = ours(second.pid, made_qdisc=True)  # inherited from the killed one's names
    now = tc_state(pair)
    assert (now["egress"], now["ingress"]) == (egress, ingress)  # the killed one's are gone
    recv = Receiver(pair, pair.b, PORT_X)
    ping(pair, 17, pair.ip_b)
    send(pair, pair.a, pair.ip_b, PORT_X, 23)
    assert recv.finish() == {PORT_X: 23}
    assert second.stop() == 0
    assert ipv4(results(second)[0]) == {
        ("egress", "IPv4", "icmp", 0): (17, 17 * PING4),
        ("ingress", "IPv4", "icmp", 0): (17, 17 * PING4),
        ("egress", "IPv4", "udp", PORT_X): (23, 23 * UDP4),
    }
    assert tc_state(pair) == before  # no filter, no clsact

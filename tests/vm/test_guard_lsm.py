"""guard on the stock kernel, which has BPF LSM (Debian builds it in and
lists bpf among the active LSMs): a connect kill rule refuses the connect
itself, so unlike on the host (tests/kernel/test_guard.py) no handshake
completes before the process dies."""
import signal
import sys

import pytest

from conftest import ROOT
from vmtools import READY_TIMEOUT

sys.path.insert(0, str(ROOT / "tests" / "kernel"))
from test_guard import CONNECT, accepted, alerts, blocked_peer_rules, listen, python, short_dir  # noqa: E402,F401

pytestmark = pytest.mark.vm


def test_a_connect_kill_rule_refuses_the_connect_itself(tracer, netns_pair, short_dir):
    port = 18500
    listener = listen(netns_pair, port)
    try:
        rules = blocked_peer_rules(short_dir, f"{netns_pair.ip_b}/32", port)
        run = tracer(["guard", "--rules", rules, "--json"], ready_timeout=READY_TIMEOUT)
        assert "via lsm_connect" in run.stderr
        in_a = netns_pair.exec(netns_pair.a)
        blocked = [python(CONNECT, netns_pair.ip_b, port, prefix=in_a).returncode for _ in range(3)]
        allowed = [python(CONNECT, netns_pair.ip_b, port + 1, prefix=in_a) for _ in range(2)]
        run.stop()
    finally:
        connections = accepted(listener)
    assert blocked == [-signal.SIGKILL] * 3
    # nobody listens there: refused by b's kernel (ECONNREFUSED), not by guard (EPERM)
    assert [(r.returncode, "Connection refused" in r.stdout) for r in allowed] == [(0, True)] * 2
    assert connections == 0
    assert [(a["rule"], a["port"], a["action"]) for a in alerts(run)] == [("blocked_peer", port, "kill")] * 3

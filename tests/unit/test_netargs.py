"""tctraffic/sockfilter option parsing and the -D words the C side compares."""
import argparse
import socket
import sys

import pytest

from tracers.spec import UsageError

from tracers.tools import sockfilter
from tracers.tools import _net
from tracers.tools import tctraffic as tc


def words(*octets):
    raw = bytes(octets).ljust(16, b"\0")
    return [int.from_bytes(raw[i:i + 4], sys.byteorder) for i in range(0, 16, 4)]


@pytest.mark.parametrize("text, shown", [
    ("10.77.1.2", "10.77.1.2/32"),
    ("10.77.1.9/24", "10.77.1.0/24"),  # host bits masked, as tc and iptables do
    ("fd77:1::2", "fd77:1::2/128"),
    ("fd77:1::/64", "fd77:1::/64"),
    ("0.0.0.0/0", "0.0.0.0/0"),
])
def test_cidr(text, shown):
    assert str(_net.cidr(text)) == shown


@pytest.mark.parametrize("text", ["", "10.77.1.256", "10.0.0.0/33", "fd77::/129", "host", "10.0.0.0/-1"])
def test_bad_cidr(text):
    with pytest.raises(argparse.ArgumentTypeError):
        _net.cidr(text)


@pytest.mark.parametrize("text, value", [("1", 1), ("53", 53), ("65535", 65535)])
def test_port(text, value):
    assert _net.port(text) == value


@pytest.mark.parametrize("text", ["0", "65536", "-1", "http", "", "1.5"])
def test_bad_port(text):
    with pytest.raises(argparse.ArgumentTypeError, match="not a port"):
        _net.port(text)


@pytest.mark.parametrize("text, rule", [
    ("5001=1:10", (5001, 0x10010, "5001=1:10")),   # tc class ids are hex
    ("80=fffe:1", (80, 0xFFFE0001, "80=fffe:1")),
    ("443=a:ff", (443, 0xA00FF, "443=a:ff")),
])
def test_priority_rule(text, rule):
    assert tc.priority_rule(text) == rule


@pytest.mark.parametrize("text, words_", [
    ("5001", "PORT=CLASSID"), ("5001=1", "class id"), ("5001=1:", "class id"), ("5001=:10", "class id"),
    ("5001=0:10", "class id"), ("5001=1:0", "class id"), ("5001=1:10000", "class id"),
    ("5001=x:1", "class id"), ("5001=ffff:1", "class id"), ("0=1:10", "not a port"),
])
def test_bad_priority_rule(text, words_):
    with pytest.raises(argparse.ArgumentTypeError, match=words_):
        tc.priority_rule(text)


def test_rule_defines_give_native_order_words_and_masks():
    d = tc.rule_defines([_net.cidr("10.77.1.0/24"), _net.cidr("fd77:1::/32")], [53, 5002],
                        [tc.priority_rule("5001=1:10")])
    assert (d["BLOCK_CIDRS"], d["BLOCK_PORTS"], d["PRIO_RULES"]) == (2, 2, 1)
    assert d["BLOCK_0_FAMILY"] == socket.AF_INET and d["BLOCK_1_FAMILY"] == socket.AF_INET6
    assert [d[f"BLOCK_0_NET{j}"] for j in range(4)] == words(10, 77, 1, 0)
    assert [d[f"BLOCK_0_MASK{j}"] for j in range(4)] == words(255, 255, 255, 0)
    assert [d[f"BLOCK_1_NET{j}"] for j in range(4)] == words(0xFD, 0x77, 0, 1)
    assert [d[f"BLOCK_1_MASK{j}"] for j in range(4)] == words(255, 255, 255, 255)
    assert (d["BLOCK_PORT_0"], d["BLOCK_PORT_1"]) == (53, 5002)
    assert (d["PRIO_PORT_0"], d["PRIO_CLASS_0"]) == (5001, 0x10010)
    assert all(isinstance(v, int) and 0 <= v < 2**32 for v in d.values())


def test_no_rules_no_defines():
    assert tc.rule_defines([], [], []) == {}


def test_too_many_rules():
    with pytest.raises(UsageError, match="at most 4 --priority"):
        tc.rule_defines([], [], [tc.priority_rule(f"{p}=1:1") for p in range(1, 6)])


def test_deltas_and_json_rows():
    before = {("traffic", "egress", "IPv4", "udp", 53): (10, 1000)}
    now = {("traffic", "egress", "IPv4", "udp", 53): (13, 1300),
           ("traffic", "ingress", "IPv4", "icmp", 0): (2, 196),
           ("overflow", "ingress"): (0, 0),
           ("overflow", "egress"): (5, 500),
           ("dropped", "egress", "port 23"): (4, 240),
           ("prioritized", "5001=1:10"): (1, 100)}
    rows = tc.deltas(now, before)
    assert tc.to_json(rows, top=20) == {
        "traffic": [{"direction": "egress", "family": "IPv4", "proto": "udp", "port": 53,
                     "packets": 3, "bytes": 300},
                    {"direction": "ingress", "family": "IPv4", "proto": "icmp", "port": 0,
                     "packets": 2, "bytes": 196}],
        "overflow": [{"direction": "egress", "packets": 5, "bytes": 500}],
        "dropped": [{"direction": "egress", "rule": "port 23", "packets": 4, "bytes": 240}],
        "prioritized": [{"rule": "5001=1:10", "packets": 1, "bytes": 100}],
    }
    assert len(tc.to_json(rows, top=1)["traffic"]) == 1


def test_overflow_rows_are_shown_beyond_top():
    rows = [(("traffic", "egress", "IPv4", "udp", p), 1, 100) for p in range(3)]
    rows.append((("overflow", "egress"), 7, 700))
    assert tc.to_json(rows, top=1)["overflow"] == [{"direction": "egress", "packets": 7, "bytes": 700}]


def test_per_cpu_counts_are_summed():
    class Counts:
        def __init__(self, packets, nbytes):
            self.packets, self.bytes = packets, nbytes
    assert tc.summed([Counts(2, 20), Counts(0, 0), Counts(5, 50)]) == (7, 70)
    assert tc.summed(Counts(3, 30)) == (3, 30)


@pytest.mark.parametrize("text, value", [("udp", 17), ("TCP", 6), ("icmpv6", 58), ("47", 47), ("0", 0)])
def test_sockfilter_proto(text, value):
    assert sockfilter.proto(text) == value


@pytest.mark.parametrize("text", ["tcpx", "256", "-1", ""])
def test_sockfilter_bad_proto(text):
    with pytest.raises(argparse.ArgumentTypeError, match="not a protocol"):
        sockfilter.proto(text)

"""tctraffic/sockfilter option parsing and the -D words the C side compares."""
import argparse
import ctypes
import socket
import sys

import pytest

from tracers.spec import UsageError

from tracers.tools import sockfilter
from tracers import options
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


class TrafficKey(ctypes.Structure):  # struct traffic_key in bpf_c/tctraffic.bpf.c
    _fields_ = [("family", ctypes.c_uint16), ("port", ctypes.c_uint16), ("direction", ctypes.c_uint8),
                ("proto", ctypes.c_uint8), ("pad", ctypes.c_uint16)]


class DropKey(ctypes.Structure):
    _fields_ = [("rule", ctypes.c_uint16), ("direction", ctypes.c_uint8), ("reason", ctypes.c_uint8)]


class Counts(ctypes.Structure):
    _fields_ = [("packets", ctypes.c_uint64), ("bytes", ctypes.c_uint64)]


def traffic_tables(*argv):
    tracer = tc.TRACER()
    return tc.tables(options.build_parser(tracer).parse_args(["lo", *argv]))


def interval(tables, before: dict, now: dict) -> dict:
    """One interval's JSON rows from fake maps: {map name: items}."""
    out = {}
    for table in tables:
        out.update(table.json(table.rows(table.read(now.get(table.map, [])),
                                         table.read(before.get(table.map, [])))))
    return out


def test_rows_of_every_table_per_interval():
    tables = traffic_tables("--priority", "5001=1:10", "--block-port", "23")
    egress_udp = TrafficKey(family=2, port=53, direction=1, proto=17)
    before = {"traffic": [(egress_udp, [Counts(10, 1000), Counts(0, 0)])]}
    now = {"traffic": [(egress_udp, [Counts(10, 1000), Counts(3, 300)]),  # per-CPU copies add up
                       (TrafficKey(family=2, port=0, direction=0, proto=1), [Counts(2, 196)]),
                       (TrafficKey(family=0, port=0, direction=0, proto=0), [Counts(1, 60)])],
           "traffic_overflow": [(0, [Counts(0, 0)]), (1, [Counts(5, 500)])],
           "drops": [(DropKey(rule=23, direction=1, reason=2), Counts(4, 240))],
           "prioritized": [(ctypes.c_int(0), Counts(1, 100)), (ctypes.c_int(3), Counts(9, 9))]}
    assert interval(tables, before, now) == {
        "traffic": [{"direction": "egress", "family": "IPv4", "proto": "udp", "port": 53,
                     "packets": 3, "bytes": 300},
                    {"direction": "ingress", "family": "IPv4", "proto": "icmp", "port": 0,
                     "packets": 2, "bytes": 196},
                    {"direction": "ingress", "family": "other", "proto": "-", "port": 0,
                     "packets": 1, "bytes": 60}],
        "overflow": [{"direction": "egress", "packets": 5, "bytes": 500}],
        "dropped": [{"direction": "egress", "rule": "port 23", "packets": 4, "bytes": 240}],
        "prioritized": [{"rule": "5001=1:10", "packets": 1, "bytes": 100}],  # slot 3: no rule
    }


def test_top_caps_flows_but_never_the_overflow():
    tables = traffic_tables("-T", "1")
    now = {"traffic": [(TrafficKey(family=2, port=p, direction=1, proto=17), [Counts(1, 100 + p)])
                       for p in range(3)],
           "traffic_overflow": [(1, [Counts(7, 700)])]}
    rows = interval(tables, {}, now)
    assert [r["port"] for r in rows["traffic"]] == [2]
    assert rows["overflow"] == [{"direction": "egress", "packets": 7, "bytes": 700}]


@pytest.mark.parametrize("text, value", [("udp", 17), ("TCP", 6), ("icmpv6", 58), ("47", 47), ("0", 0)])
def test_sockfilter_proto(text, value):
    assert sockfilter.proto(text) == value


@pytest.mark.parametrize("text", ["tcpx", "256", "-1", ""])
def test_sockfilter_bad_proto(text):
    with pytest.raises(argparse.ArgumentTypeError, match="not a protocol"):
        sockfilter.proto(text)

"""tctraffic in a veth namespace pair: exact counts, blocking, priority, lifecycle.

The tracer runs inside namespace a on veth-a; the peer answers from b.
Static neighbours (conftest) mean no ARP; IPv6 housekeeping (ICMPv6) has
its own rows and never blurs the IPv4/UDP rows asserted here.
"""
import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from conftest import ROOT

pytestmark = pytest.mark.kernel

SIZE = 200  # UDP payload bytes
UDP4, UDP6, PING4 = 14 + 20 + 8 + SIZE, 14 + 40 + 8 + SIZE, 14 + 20 + 8 + 56  # L2 lengths
PORT_X, PORT_Y = 5001, 5002

RECEIVER = r"""
import json, select, socket, sys
socks = {}
for port in map(int, sys.argv[1:]):
    s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    s.bind(("::", port))
    socks[s] = port
counts = dict.fromkeys(socks.values(), 0)
print("ready", flush=True)
while sys.stdin not in select.select([*socks, sys.stdin], [], [])[0]:
    pass
for s, port in socks.items():
    s.setblocking(False)
    try:
        while s.recv(65536):
            counts[port] += 1
    except BlockingIOError:
        pass
print(json.dumps(counts), flush=True)
"""

SENDER = r"""
import socket, sys
dst, port, count, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
s = socket.socket(socket.AF_INET6 if ":" in dst else socket.AF_INET, socket.SOCK_DGRAM)
for _ in range(count):
    s.sendto(b"x" * size, (dst, port))
"""


class Receiver:
    """UDP sockets bound in a namespace; finish() -> datagrams received per port."""

    def __init__(self, pair, ns, *ports):
        self.proc = subprocess.Popen(pair.exec(ns, sys.executable, "-c", RECEIVER, *map(str, ports)),
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout.readline().strip() == "ready"

    def finish(self) -> dict:
        time.sleep(0.2)  # veth delivers in softirq; let the last datagrams land
        out, _ = self.proc.communicate("", timeout=10)
        return {int(k): v for k, v in json.loads(out).items()}


def send(pair, ns, dst, port, count, size=SIZE):
    subprocess.run(pair.exec(ns, sys.executable, "-c", SENDER, dst, str(port), str(count), str(size)),
                   check=True, timeout=30)


def ping(pair, count, dst):
    proc = pair.run(pair.a, f"ping -n -q -c {count} -i 0.01 -W 2 {dst}", timeout=60)
    assert f"{count} received" in proc.stdout, proc.stdout + proc.stderr


def start(tracer, pair, *args, **kw):
    return tracer(["tctraffic", pair.if_a, "--json", *args], prefix=pair.exec(pair.a), **kw)


def results(run) -> tuple[dict, dict, dict]:
    """Summed over all intervals: traffic, dropped and prioritized rows."""
    traffic, dropped, prio = {}, {}, {}
    for line in run.json_lines():
        for table, rows, key in ((traffic, line["traffic"], ("direction", "family", "proto", "port")),
                                 (dropped, line["dropped"], ("direction", "rule")),
                                 (prio, line["prioritized"], ("rule",))):
            for r in rows:
                k = tuple(r[f] for f in key)
                p, b = table.get(k, (0, 0))
                table[k] = (p + r["packets"], b + r["bytes"])
    return traffic, dropped, prio


def ipv4(traffic):
    return {k: v for k, v in traffic.items() if k[1] == "IPv4"}


def test_counts_pings_and_udp_exactly(tracer, netns_pair):
    pair = netns_pair
    recv = Receiver(pair, pair.b, PORT_X)
    run = start(tracer, pair, "0.5")  # interval deltas must add up exactly too
    ping(pair, 41, pair.ip_b)
    send(pair, pair.a, pair.ip_b, PORT_X, 29)
    assert recv.finish() == {PORT_X: 29}
    time.sleep(0.6)
    assert run.stop() == 0
    traffic, dropped, _ = results(run)
    assert ipv4(traffic) == {
        ("egress", "IPv4", "icmp", 0): (41, 41 * PING4),
        ("ingress", "IPv4", "icmp", 0): (41, 41 * PING4),
        ("egress", "IPv4", "udp", PORT_X): (29, 29 * UDP4),
    }
    assert dropped == {}
    assert len(run.json_lines()) >= 2


def test_block_drops_exactly_the_blocked_traffic(tracer, netns_pair):
    pair = netns_pair
    recv = Receiver(pair, pair.b, PORT_X, PORT_Y)
    run = start(tracer, pair, "--block", f"{pair.ip6_b}/128", "--block-port", str(PORT_Y))
    ping(pair, 41, pair.ip_b)                         # passes
    send(pair, pair.a, pair.ip_b, PORT_X, 29)         # passes
    send(pair, pair.a, pair.ip6_b, PORT_X, 7)         # CIDR rule, egress
    send(pair, pair.a, pair.ip_b, PORT_Y, 11)         # port rule, egress
    send(pair, pair.b, pair.ip_a, PORT_Y, 5)          # port rule, ingress
    assert recv.finish() == {PORT_X: 29, PORT_Y: 0}
    assert run.stop() == 0
    traffic, dropped, _ = results(run)
    assert dropped == {
        ("egress", f"{pair.ip6_b}/128"): (7, 7 * UDP6),
        ("egress", f"port {PORT_Y}"): (11, 11 * UDP4),
        ("ingress", f"port {PORT_Y}"): (5, 5 * UDP4),
    }
    assert ipv4(traffic) == {
        ("egress", "IPv4", "icmp", 0): (41, 41 * PING4),
        ("ingress", "IPv4", "icmp", 0): (41, 41 * PING4),
        ("egress", "IPv4", "udp", PORT_X): (29, 29 * UDP4),
    }
    assert not [k for k in traffic if k[2] == "udp" and k[1] == "IPv6"]


def class_stats(pair, classid: str) -> tuple[int, int]:
    text = pair.run(pair.a, f"tc -s class show dev {pair.if_a} classid {classid}").stdout
    m = re.search(r"Sent (\d+) bytes (\d+) pkt", text)
    assert m, text
    return int(m.group(2)), int(m.group(1))


def test_priority_puts_packets_in_the_htb_class(tracer, netns_pair):
    pair = netns_pair
    for cmd in (f"tc qdisc add dev {pair.if_a} root handle 1: htb default 20",
                f"tc class add dev {pair.if_a} parent 1: classid 1:10 htb rate 1gbit",
                f"tc class add dev {pair.if_a} parent 1: classid 1:20 htb rate 1gbit"):
        assert pair.run(pair.a, cmd).returncode == 0, cmd
    recv = Receiver(pair, pair.b, PORT_X, PORT_Y)
    run = start(tracer, pair, "--priority", f"{PORT_X}=1:10")
    send(pair, pair.a, pair.ip_b, PORT_X, 23)
    send(pair, pair.a, pair.ip_b, PORT_Y, 9)
    assert recv.finish() == {PORT_X: 23, PORT_Y: 9}
    assert run.stop() == 0
    assert class_stats(pair, "1:10") == (23, 23 * UDP4)
    assert class_stats(pair, "1:20")[0] >= 9  # the rest, IPv6 housekeeping included
    assert results(run)[2] == {(f"{PORT_X}=1:10",): (23, 23 * UDP4)}
    qdiscs = pair.run(pair.a, f"tc qdisc show dev {pair.if_a}").stdout
    assert "htb 1:" in qdiscs and "clsact" not in qdiscs  # theirs stays, ours goes


# -- lifecycle: only our filters and qdisc ever go -----------------------------
FOREIGN = "prio 7 protocol ip u32 match ip dst 192.0.2.1/32 flowid 1:1"


def tc_state(pair) -> dict:
    """filters per direction as (kind, bpf name or u32 match), qdisc kinds."""
    state = {}
    for direction in ("ingress", "egress"):
        out = pair.run(pair.a, f"tc -j filter show dev {pair.if_a} {direction}").stdout
        state[direction] = sorted({(f["kind"], f["options"].get("bpf_name", "")) for f in
                                   json.loads(out or "[]") if "options" in f})
    out = pair.run(pair.a, f"tc -j qdisc show dev {pair.if_a}").stdout
    state["qdiscs"] = sorted(q["kind"] for q in json.loads(out))
    return state


def our_prog_ids(pair) -> set:
    ids = set()
    for direction in ("ingress", "egress"):
        out = pair.run(pair.a, f"tc -j filter show dev {pair.if_a} {direction}").stdout
        ids |= {f["options"]["prog"]["id"] for f in json.loads(out or "[]")
                if f.get("options", {}).get("bpf_name", "").startswith("bpfwatch-")}
    return ids


def progs_exist(ids) -> set:
    out = subprocess.run(["bpftool", "-j", "prog", "show"], capture_output=True, text=True).stdout
    return ids & {p["id"] for p in json.loads(out)}


def wait_progs_gone(ids, timeout=10.0) -> set:
    deadline = time.monotonic() + timeout
    while progs_exist(ids) and time.monotonic() < deadline:
        time.sleep(0.2)
    return progs_exist(ids)


def add_foreign(pair) -> dict:
    assert pair.run(pair.a, f"tc qdisc add dev {pair.if_a} clsact").returncode == 0
    for direction in ("ingress", "egress"):
        assert pair.run(pair.a, f"tc filter add dev {pair.if_a} {direction} {FOREIGN}").returncode == 0
    return tc_state(pair)


def ours(pid):
    return [("bpf", f"bpfwatch-{pid}-egress")], [("bpf", f"bpfwatch-{pid}-ingress")]


@pytest.mark.parametrize("foreign", [True, False])
@pytest.mark.parametrize("ending", ["duration", "SIGINT", "SIGTERM"])
def test_exit_leaves_only_what_was_there(tracer, netns_pair, ending, foreign):
    pair = netns_pair
    before = add_foreign(pair) if foreign else tc_state(pair)
    run = start(tracer, pair, *(["-d", "1"] if ending == "duration" else []))
    egress, ingress = ours(run.pid)
    during = tc_state(pair)
    assert during["egress"] == sorted(before["egress"] + egress)
    assert during["ingress"] == sorted(before["ingress"] + ingress)
    ids = our_prog_ids(pair)
    assert len(ids) == 2
    if ending == "duration":
        assert run.wait(30) == 0
    else:
        assert run.stop(getattr(signal, ending)) == 0
    assert tc_state(pair) == before
    assert wait_progs_gone(ids) == set()


@pytest.mark.parametrize("foreign", [True, False])
def test_sigkill_then_restart_cleans_up(tracer, netns_pair, foreign):
    pair = netns_pair
    before = add_foreign(pair) if foreign else tc_state(pair)
    first = start(tracer, pair)
    ids = our_prog_ids(pair)
    assert first.stop(signal.SIGKILL) == -9
    # The kernel keeps filters (and their programs) of a killed owner...
    killed = tc_state(pair)
    assert ("bpf", f"bpfwatch-{first.pid}-ingress") in killed["ingress"]
    assert progs_exist(ids) == ids
    # ...until the next start removes them, and its exit removes its own.
    second = start(tracer, pair)
    egress, ingress = ours(second.pid)
    assert tc_state(pair)["ingress"] == sorted(before["ingress"] + ingress)
    assert tc_state(pair)["egress"] == sorted(before["egress"] + egress)
    ids |= our_prog_ids(pair)
    assert second.stop() == 0
    assert tc_state(pair) == before
    assert wait_progs_gone(ids) == set()


def test_ingress_qdisc_conflict_is_one_line_and_leaves_nothing(netns_pair):
    pair = netns_pair
    assert pair.run(pair.a, f"tc qdisc add dev {pair.if_a} ingress").returncode == 0
    before = tc_state(pair)
    proc = subprocess.run(pair.exec(pair.a, sys.executable, "-m", "tracers", "tctraffic", pair.if_a),
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert len(proc.stderr.strip().splitlines()) == 1 and "'ingress' qdisc" in proc.stderr
    assert tc_state(pair) == before


@pytest.mark.parametrize("args, words", [
    (["no-such-if0"], "no interface 'no-such-if0'"),
    (["lo", "--block", "10.1.2.300/24"], "not an IPv4 or IPv6"),
    (["lo", "--block", "fd77::/129"], "not an IPv4 or IPv6"),
    (["lo", "--block-port", "0"], "not a port"),
    (["lo", "--block-port", "http"], "not a port"),
    (["lo", "--priority", "5001"], "PORT=CLASSID"),
    (["lo", "--priority", "5001=1"], "class id"),
    (["lo", "--priority", "70000=1:10"], "not a port"),
    (["lo", "-p", str(os.getpid())], "not offered"),
    (["lo", *[a for i in range(9) for a in ("--block", f"10.0.{i}.0/24")]], "at most 8"),
])
def test_bad_input_gets_one_line(args, words):
    proc = subprocess.run([sys.executable, "-m", "tracers", "tctraffic", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and words in lines[0], proc.stderr

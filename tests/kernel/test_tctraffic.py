"""tctraffic in a veth namespace pair: exact counts, blocking, priority, what
runs after ours, flows beyond the map; on both hooks (tcx links, clsact
filters). Lifecycle (exit, SIGKILL, owners) is in test_tctraffic_lifecycle.py.

The tracer runs inside namespace a on veth-a; the peer answers from b.
Static neighbours (conftest) mean no ARP; IPv6 housekeeping (ICMPv6) has
its own rows and never blurs the IPv4/UDP rows asserted here.
"""
import contextlib
import ctypes
import json
import os
import re
import socket
import subprocess
import sys
import time

import pytest

from conftest import ROOT

pytestmark = pytest.mark.kernel

HOOKS = ("tcx", "clsact")
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


def ping(pair, count, dst, received=None):
    """ping from a; exactly `received` replies (default: all of them)."""
    received = count if received is None else received
    wait = 2 if received else 1
    proc = pair.run(pair.a, f"ping -n -q -c {count} -i 0.01 -W {wait} {dst}", timeout=60)
    assert f"{count} packets transmitted, {received} received" in proc.stdout, proc.stdout + proc.stderr


def start(tracer, pair, *args, hook=None, **kw):
    """tctraffic on veth-a in namespace a (--hook when given), attached."""
    hooks = ["--hook", hook] if hook else []
    return tracer(["tctraffic", pair.if_a, "--json", *hooks, *args], prefix=pair.exec(pair.a), **kw)


def results(run) -> tuple[dict, dict, dict]:
    """Summed over all intervals: traffic, dropped and prioritized rows
    (no test here but the overflow one fills the flow map)."""
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


@pytest.mark.parametrize("hook", HOOKS)
def test_counts_pings_and_udp_exactly(tracer, netns_pair, hook):
    pair = netns_pair
    recv = Receiver(pair, pair.b, PORT_X)
    run = start(tracer, pair, "0.5", hook=hook)  # interval deltas must add up exactly too
    assert f"via {hook}" in run.stderr
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


@pytest.mark.parametrize("hook", HOOKS)
def test_block_drops_exactly_the_blocked_traffic(tracer, netns_pair, hook):
    pair = netns_pair
    recv = Receiver(pair, pair.b, PORT_X, PORT_Y)
    run = start(tracer, pair, "--block", f"{pair.ip6_b}/128", "--block-port", str(PORT_Y), hook=hook)
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


@pytest.mark.parametrize("hook", HOOKS)
def test_priority_puts_packets_in_the_htb_class(tracer, netns_pair, hook):
    pair = netns_pair
    for cmd in (f"tc qdisc add dev {pair.if_a} root handle 1: htb default 20",
                f"tc class add dev {pair.if_a} parent 1: classid 1:10 htb rate 1gbit",
                f"tc class add dev {pair.if_a} parent 1: classid 1:20 htb rate 1gbit"):
        assert pair.run(pair.a, cmd).returncode == 0, cmd
    recv = Receiver(pair, pair.b, PORT_X, PORT_Y)
    run = start(tracer, pair, "--priority", f"{PORT_X}=1:10", hook=hook)
    send(pair, pair.a, pair.ip_b, PORT_X, 23)
    send(pair, pair.a, pair.ip_b, PORT_Y, 9)
    assert recv.finish() == {PORT_X: 23, PORT_Y: 9}
    assert run.stop() == 0
    assert class_stats(pair, "1:10") == (23, 23 * UDP4)
    assert class_stats(pair, "1:20")[0] >= 9  # the rest, IPv6 housekeeping included
    assert results(run)[2] == {(f"{PORT_X}=1:10",): (23, 23 * UDP4)}
    qdiscs = pair.run(pair.a, f"tc qdisc show dev {pair.if_a}").stdout
    assert "htb 1:" in qdiscs and "clsact" not in qdiscs  # theirs stays, ours goes


# -- what runs after ours: the same on tcx and clsact ------------------------------
AFTER_C = r"""
#include <uapi/linux/pkt_cls.h>
BPF_ARRAY(seen, u64, 4);  // [base + 0] IPv4, [base + 1] IPv6 UDP datagrams of the test's size
static __always_inline int count(struct __sk_buff *skb, int base)
{
    int slot = skb->len == LEN4 ? base : skb->len == LEN6 ? base + 1 : -1;
    u64 *n = seen.lookup(&slot);
    if (n)
        __sync_fetch_and_add(n, 1);
    return TC_ACT_UNSPEC;
}
int on_after_link(struct __sk_buff *skb) { return count(skb, 0); }
int on_after_filter(struct __sk_buff *skb) { return count(skb, 2); }
"""


@contextlib.contextmanager
def inside(ns: str):
    """This thread in network namespace ns (for ifindexes and links)."""
    from tracers.runtime.tcx import CLONE_NEWNET
    libc = ctypes.CDLL(None, use_errno=True)
    home, there = os.open("/proc/self/ns/net", os.O_RDONLY), os.open(f"/run/netns/{ns}", os.O_RDONLY)
    try:
        assert libc.setns(there, CLONE_NEWNET) == 0, os.strerror(ctypes.get_errno())
        yield
    finally:
        assert libc.setns(home, CLONE_NEWNET) == 0
        os.close(there)
        os.close(home)


class CountersAfter:
    """Counting programs after every other on a's egress: a cls_bpf filter
    (pref 65000, last) on the operator's clsact and, with tcx, a tcx link
    appended after ours. tcx runs before clsact, so both come after us."""

    def __init__(self, pair, tcx: bool):
        from bcc import BPF
        from pyroute2 import IPRoute

        from tracers.runtime import machine
        machine.resolve_headers()  # BCC_KERNEL_SOURCE: the fallback header tree
        self.bpf = BPF(text=AFTER_C.encode(), cflags=[f"-DLEN4={UDP4}", f"-DLEN6={UDP6}"])
        # in this thread, not pyroute2's NetNS: 0.7 serves that from a forked
        # child, which has no program fd opened after the fork (EBADF)
        with inside(pair.a), IPRoute() as ns:
            index = ns.link_lookup(ifname=pair.if_a)[0]
            ns.tc("add", "clsact", index)
            ns.tc("add-filter", "bpf", index, ":1", name="test-after", parent="ffff:fff3", classid=1,
                  fd=self.bpf.load_func(b"on_after_filter", BPF.SCHED_CLS).fd, direct_action=True,
                  prio=65000)
        self.link = None
        self.link_fn = self.bpf.load_func(b"on_after_link", BPF.SCHED_CLS) if tcx else None

    def link_after(self, pair) -> None:
        from tracers.runtime import bpfsys
        with inside(pair.a):
            self.link = bpfsys.tcx_link(self.link_fn.fd, socket.if_nametoindex(pair.if_a), "egress",
                                        bpfsys.BPF_F_AFTER)

    def counts(self) -> dict:
        seen = self.bpf[b"seen"]
        values = [seen[seen.Key(i)].value for i in range(4)]
        return {"link": tuple(values[:2]), "filter": tuple(values[2:])}

    def close(self) -> None:
        if self.link is not None:
            os.close(self.link)
        self.bpf.cleanup()


@pytest.mark.parametrize("hook", HOOKS)
def test_programs_and_filters_after_ours_see_what_passes_not_what_is_dropped(
        tracer, netns_pair, hook):
    pair = netns_pair
    after = CountersAfter(pair, tcx=hook == "tcx")
    try:
        recv = Receiver(pair, pair.b, PORT_X)
        run = start(tracer, pair, "--block", f"{pair.ip6_b}/128", hook=hook)
        if hook == "tcx":
            after.link_after(pair)
        send(pair, pair.a, pair.ip_b, PORT_X, 29)    # passes ours: TCX_NEXT / TC_ACT_UNSPEC
        send(pair, pair.a, pair.ip6_b, PORT_X, 7)    # dropped by ours: TCX_DROP / TC_ACT_SHOT
        assert recv.finish() == {PORT_X: 29}
        assert after.counts() == {"link": (29, 0) if hook == "tcx" else (0, 0), "filter": (29, 0)}
        assert run.stop() == 0
    finally:
        after.close()
    traffic, dropped, _ = results(run)
    assert dropped == {("egress", f"{pair.ip6_b}/128"): (7, 7 * UDP6)}
    assert ipv4(traffic)[("egress", "IPv4", "udp", PORT_X)] == (29, 29 * UDP4)


# -- more flows than the map holds: counted as overflow, never lost --------------
FLOOD = r"""
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for _ in range(int(sys.argv[3])):
    s.sendto(b"x" * 200, (sys.argv[1], int(sys.argv[2])))
for port in range(10000, 10000 + int(sys.argv[4])):
    s.sendto(b"x" * 200, (sys.argv[1], port))
"""


def test_flows_beyond_the_map_are_counted_as_overflow_not_lost(tracer, netns_pair):
    pair = netns_pair
    # a sends nothing but ours (no IPv6, static neighbours); nobody answers:
    # the destination's MAC is nobody's, so b drops the frames silently
    nobody = pair.ip_b.rsplit(".", 1)[0] + ".99"
    assert pair.run(pair.a, f"sysctl -qw net.ipv6.conf.{pair.if_a}.disable_ipv6=1 && ip neigh "
                            f"replace {nobody} lladdr 02:00:00:00:00:99 dev {pair.if_a} "
                            "nud permanent").returncode == 0
    run = start(tracer, pair, "-T", "100000")
    one_port, many_ports = 1000, 6000  # issue 11: 1919-2047 packets of these went missing
    subprocess.run(pair.exec(pair.a, sys.executable, "-c", FLOOD, nobody, str(PORT_X),
                             str(one_port), str(many_ports)), check=True, timeout=60)
    time.sleep(0.2)
    assert run.stop() == 0
    [line] = run.json_lines()
    egress = {r["port"]: (r["packets"], r["bytes"]) for r in line["traffic"]
              if r["direction"] == "egress"}
    overflow = {r["direction"]: (r["packets"], r["bytes"]) for r in line["overflow"]}
    assert len(line["traffic"]) == 4096  # the map is full
    assert egress[PORT_X] == (one_port, one_port * UDP4)
    sent = one_port + many_ports
    assert sum(p for p, _ in egress.values()) + overflow["egress"][0] == sent
    assert sum(b for _, b in egress.values()) + overflow["egress"][1] == sent * UDP4
    assert overflow["egress"][0] >= many_ports + 1 - 4096
    assert "flow map full (4096 flows)" in run.stderr

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
    (["lo", "--max-flows", "0"], "--max-flows"),
    (["lo", "--max-flows", str(2 ** 20 + 1)], "at most 1048576"),
    (["lo", "--hook", "tc"], "tc"),
    (["lo", *[a for i in range(9) for a in ("--block", f"10.0.{i}.0/24")]], "at most 8"),
])
def test_bad_input_gets_one_line(args, words):
    proc = subprocess.run([sys.executable, "-m", "tracers", "tctraffic", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and words in lines[0], proc.stderr


def test_doctor_and_list_show_tcx_and_prefer_it():
    doctor = subprocess.run([sys.executable, "-m", "tracers", "doctor", "--json"], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert doctor.returncode == 0, doctor.stderr
    tcx = json.loads(doctor.stdout)["features"]["tcx"]
    assert tcx["available"] and "BPF_LINK_CREATE" in tcx["detail"], tcx
    listing = subprocess.run([sys.executable, "-m", "tracers", "list", "--json"], cwd=ROOT,
                             capture_output=True, text=True, timeout=120)
    assert listing.returncode == 0, listing.stderr
    [row] = [r for r in json.loads(listing.stdout) if r["tracer"] == "tctraffic"]
    assert row["hook"] == "tcx" and row["rejected"] == []

"""TCP tracers against the kernel's own counters and owners (issue 16):
failed retransmit attempts, SO_REUSEPORT listeners, IPv4 on dual-stack
sockets. Over a veth pair between two network namespaces."""
import json
import random
import subprocess
import sys
import time

import pytest

from conftest import unique_name

pytestmark = pytest.mark.kernel


def records(run):
    return [r for r in run.json_lines() if "summary" not in r]


# In namespace a: connect, make the peer unreachable (a wrong neighbour MAC:
# the frames leave, b drops them), send, and wait for the kernel's RetransSegs
# to grow by 3 (sent retransmits). Then a qdisc that drops every packet
# (pfifo limit 0): each later attempt fails locally and is retried every
# 500 ms; after 2 failures (TCPRetransFail), reset the connection (no more).
# Prints the deltas of both counters: RetransSegs counts the failed attempts
# too (it grows before the transmit), so the sent ones are 5 - 2.
RETRANS_FAIL_CLIENT = r"""
import socket, struct, subprocess, sys, time
ip, port, dev = sys.argv[1], int(sys.argv[2]), sys.argv[3]

def counters():
    tcp = [l.split() for l in open("/proc/net/snmp") if l.startswith("Tcp:")]
    ext = [l.split() for l in open("/proc/net/netstat") if l.startswith("TcpExt:")]
    return (int(dict(zip(tcp[0], tcp[1]))["RetransSegs"]),
            int(dict(zip(ext[0], ext[1]))["TCPRetransFail"]))

def wait(index, target):
    deadline = time.monotonic() + 30
    while counters()[index] < target:
        assert time.monotonic() < deadline, counters()
        time.sleep(0.005)

c = socket.create_connection((ip, port))
c.sendall(b"x")
assert c.recv(1) == b"y"
subprocess.run(["ip", "neigh", "replace", ip, "lladdr", "02:00:00:00:00:01", "dev", dev,
                "nud", "permanent"], check=True)
sent, failed = counters()
c.sendall(b"d" * 100)
wait(0, sent + 3)
subprocess.run(["tc", "qdisc", "add", "dev", dev, "root", "pfifo", "limit", "0"], check=True)
wait(1, failed + 2)
c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
c.close()
now = counters()
print(now[0] - sent, now[1] - failed, flush=True)
"""

ECHO_ONE = r"""
import socket, sys
s = socket.socket()
s.bind((sys.argv[1], int(sys.argv[2])))
s.listen(1)
print("listening", flush=True)
c, _ = s.accept()
c.recv(1)
c.sendall(b"y")
c.settimeout(30)
try:
    while c.recv(100):
        pass
except OSError:
    pass
"""


def provoke_failed_retransmits(p, port: int, timeout: float = 60) -> None:
    """One connection from a to b with 5 retransmit attempts, 2 of them
    failed (the client checks the kernel's own counters say so)."""
    server = subprocess.Popen(p.exec(p.b, sys.executable, "-c", ECHO_ONE, p.ip_b, str(port)),
                              stdout=subprocess.PIPE, text=True)
    assert server.stdout.readline().strip() == "listening"
    client = subprocess.run(p.exec(p.a, sys.executable, "-c", RETRANS_FAIL_CLIENT, p.ip_b, str(port),
                                   p.if_a), capture_output=True, text=True, timeout=timeout)
    assert client.returncode == 0, client.stderr
    assert client.stdout.split() == ["5", "2"]  # RetransSegs, TCPRetransFail
    server.kill()
    server.wait()


def test_failed_retransmit_attempts_are_not_retransmits(tracer, netns_pair):
    # 3 retransmits sent and 2 failed attempts (RetransSegs 5, TCPRetransFail
    # 2); tcp:tcp_retransmit_skb fires for all 5 on this kernel
    p = netns_pair
    port = random.randrange(30000, 40000)
    events = tracer(["tcpretrans", "--json", "--rport", str(port)])
    flows = tracer(["tcpretrans", "--json", "-c", "--rport", str(port)])
    provoke_failed_retransmits(p, port)
    for run in (events, flows):
        assert run.stop() == 0, run.stderr
    recs = records(events)
    assert [(r["rport"], r["state"]) for r in recs] == [(port, "ESTABLISHED")] * 3
    assert events.json_lines()[-1]["summary"]["failed_attempts"] == 2
    (line,) = flows.json_lines()
    assert [(f["rport"], f["retransmits"], f["failed"]) for f in line["flows"]] == [(port, 3, 2)]


# Both ends dual-stack (AF_INET6 sockets, IPV6_V6ONLY off): the server on ::,
# the client connecting to ::ffff:<IPv4>. The kernel speaks IPv4 on the wire.
DUAL_SERVER = r"""
import ctypes, os, socket, sys
port, n, name = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
ctypes.CDLL(None).prctl(15, name.encode(), 0, 0, 0)  # PR_SET_NAME
s = socket.socket(socket.AF_INET6)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
s.bind(("::", port))
s.listen(16)
print(os.getpid(), flush=True)
for _ in range(n):
    c, _ = s.accept()
    c.sendall(c.recv(10))
    c.recv(10)
    c.close()
"""

DUAL_CLIENT = r"""
import json, os, socket, sys
ip, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
ports = []
for _ in range(n):
    c = socket.socket(socket.AF_INET6)
    c.connect(("::ffff:" + ip, port))
    ports.append(c.getsockname()[1])
    c.sendall(b"hello")
    assert c.recv(10) == b"hello"
    c.close()
print(json.dumps({"pid": os.getpid(), "ports": ports}), flush=True)
"""


def test_ipv4_on_dual_stack_sockets_is_reported_as_ipv4(tracer, netns_pair):
    # 5 connections: IPv4 on the wire, AF_INET6 sockets at both ends
    p, n = netns_pair, 5
    port = random.randrange(40000, 50000)
    srv_name = unique_name("dual")
    connects, life_client, life_server, accepts = [tracer(a) for a in (
        ["tcpconnect", "--json", "-4", "--rport", str(port)],
        ["tcplife", "--json", "-4", "--rport", str(port)],
        ["tcplife", "--json", "-4", "--lport", str(port)],
        ["tcpaccept", "--json", "-4", "--lport", str(port)])]
    server = subprocess.Popen(p.exec(p.b, sys.executable, "-c", DUAL_SERVER, str(port), str(n), srv_name),
                              stdout=subprocess.PIPE, text=True)
    server_pid = int(server.stdout.readline())
    client = subprocess.run(p.exec(p.a, sys.executable, "-c", DUAL_CLIENT, p.ip_b, str(port), str(n)),
                            capture_output=True, text=True, timeout=60)
    assert client.returncode == 0, client.stderr
    assert server.wait(30) == 0
    out = json.loads(client.stdout)
    time.sleep(0.3)
    for run in (connects, life_client, life_server, accepts):
        assert run.stop() == 0, run.stderr
    v4 = ("IPv4", p.ip_a, p.ip_b)
    assert [(r["family"], r["laddr"], r["raddr"], r["lport"], r["result"], r["pid"])
            for r in records(connects)] == [(*v4, lp, "established", out["pid"]) for lp in out["ports"]]
    assert [(r["family"], r["laddr"], r["raddr"], r["lport"]) for r in records(life_client)] == \
        [(*v4, lp) for lp in out["ports"]]
    assert sorted((r["family"], r["laddr"], r["raddr"], r["rport"], r["pid"]) for r in records(life_server)) == \
        sorted(("IPv4", p.ip_b, p.ip_a, lp, server_pid) for lp in out["ports"])
    assert [(r["family"], r["laddr"], r["raddr"], r["rport"], r["pid"], r["comm"]) for r in records(accepts)] == \
        [("IPv4", p.ip_b, p.ip_a, lp, server_pid, srv_name) for lp in out["ports"]]


# A SO_REUSEPORT listener that accepts N connections. The first one steers
# the group with a classic BPF program: the client's source port parity picks
# the listener (even: the first, odd: the second), so the split is known.
REUSEPORT_SERVER = r"""
import ctypes, os, socket, struct, sys
port, n, name, steer = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4] == "1"
ctypes.CDLL(None).prctl(15, name.encode(), 0, 0, 0)  # PR_SET_NAME
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
s.bind(("0.0.0.0", port))
s.listen(16)
if steer:  # ldh [SKF_NET_OFF + 20] (TCP source port), and #1, ret a
    code = struct.pack("HBBI" * 3, 0x28, 0, 0, (-0x100000 + 20) & 0xffffffff, 0x54, 0, 0, 1, 0x16, 0, 0, 0)
    prog = ctypes.create_string_buffer(code)
    fprog = struct.pack("HxxxxxxQ", 3, ctypes.addressof(prog))
    s.setsockopt(socket.SOL_SOCKET, 51, fprog)  # SO_ATTACH_REUSEPORT_CBPF
print(os.getpid(), flush=True)
for _ in range(n):
    c, _ = s.accept()
    c.recv(10)
    c.close()
"""

PORTS_CLIENT = r"""
import socket, sys
ip, port = sys.argv[1], int(sys.argv[2])
for sport in map(int, sys.argv[3:]):
    c = socket.socket()
    c.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    c.bind(("0.0.0.0", sport))
    c.connect((ip, port))
    c.sendall(b"x")
    c.close()
"""


def reuseport_split(tracer, netns_pair, *extra, **start) -> tuple[list[list[int]], str]:
    """Two processes on one SO_REUSEPORT port, 7 connections to the first
    (listening first), 5 to the second: how many tcpaccept gives each, and
    its stderr. `start`: the tracer fixture's options."""
    p = netns_pair
    port = random.randrange(40000, 50000)
    base = random.randrange(52000, 60000, 2)
    to_first = [base + 2 * i for i in range(7)]
    to_second = [base + 2 * i + 1 for i in range(5)]
    accepts = tracer(["tcpaccept", "--json", "--lport", str(port), *extra], **start)
    names = unique_name("rpA"), unique_name("rpB")
    servers, pids = [], []
    for name, n, steer in ((names[0], 7, "1"), (names[1], 5, "0")):
        servers.append(subprocess.Popen(p.exec(p.b, sys.executable, "-c", REUSEPORT_SERVER, str(port),
                                               str(n), name, steer), stdout=subprocess.PIPE, text=True))
        pids.append(int(servers[-1].stdout.readline()))  # listening
    order = [sp for pair in zip(to_first, to_second) for sp in pair] + to_first[5:]
    client = subprocess.run(p.exec(p.a, sys.executable, "-c", PORTS_CLIENT, p.ip_b, str(port),
                                   *map(str, order)), capture_output=True, text=True, timeout=120)
    assert client.returncode == 0, client.stderr
    assert [s.wait(60) for s in servers] == [0, 0]  # each accepted exactly its share
    time.sleep(0.2)
    assert accepts.stop() == 0, accepts.stderr
    owner = {r["rport"]: (r["pid"], r["comm"]) for r in records(accepts)}
    assert sorted(owner) == sorted(order)
    # per listener: [accepts of its own connections, accepts of all 12]
    return [[sum(owner[sp] == (pid, name) for sp in ports), sum(owner[sp] == (pid, name) for sp in order)]
            for pid, name, ports in zip(pids, names, (to_first, to_second))], accepts.stderr


def test_reuseport_accepts_belong_to_the_listener_that_got_them(tracer, netns_pair):
    got, stderr = reuseport_split(tracer, netns_pair)
    assert got == [[7, 7], [5, 5]]
    assert "via tracepoint..." in stderr  # sk_data_ready named the listener


def test_reuseport_accepts_by_port_go_to_the_last_listener(tracer, netns_pair):
    # the documented fallback where the kernel has neither sk_data_ready nor kprobes
    got, _ = reuseport_split(tracer, netns_pair, "--hook", "tracepoint_by_port")
    assert got == [[0, 0], [5, 12]]


# A Fast Open server: accepts N connections, prints TCPFastOpenPassive's
# growth (connections whose SYN carried accepted data), then waits for "end".
TFO_SERVER = r"""
import socket, sys
port, n = int(sys.argv[1]), int(sys.argv[2])

def passive():
    ext = [l.split() for l in open("/proc/net/netstat") if l.startswith("TcpExt:")]
    return int(dict(zip(ext[0], ext[1]))["TCPFastOpenPassive"])

s = socket.socket()
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_FASTOPEN, 16)
s.bind(("0.0.0.0", port))
s.listen(16)
before = passive()
print("listening", flush=True)
for _ in range(n):
    c, _ = s.accept()
    assert c.recv(10) == b"x"
    c.sendall(b"y")
    c.close()
print(passive() - before, flush=True)
sys.stdin.readline()
"""

TFO_CLIENT = r"""
import socket, sys
ip, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
for _ in range(n):
    c = socket.socket()
    c.sendto(b"x", socket.MSG_FASTOPEN, (ip, port))  # the first one fetches the cookie
    assert c.recv(1) == b"y"
    c.close()
"""


def test_fast_open_accepts_are_all_reported_by_the_time_the_tracer_ends(tracer, netns_pair):
    # A Fast Open child is established with no listener wake-up after it: its
    # record must still come out, even when nothing else happens before exit.
    p, port, n = netns_pair, random.randrange(40000, 50000), 9
    for ns in (p.a, p.b):
        assert p.run(ns, "sysctl -qw net.ipv4.tcp_fastopen=3").returncode == 0
    accepts = tracer(["tcpaccept", "--json", "--lport", str(port)])
    counts = tracer(["tcpaccept", "--json", "-c", "--lport", str(port)])
    server = subprocess.Popen(p.exec(p.b, sys.executable, "-c", TFO_SERVER, str(port), str(n)),
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout.readline() == "listening\n"
        client = subprocess.run(p.exec(p.a, sys.executable, "-c", TFO_CLIENT, p.ip_b, str(port), str(n)),
                                capture_output=True, text=True, timeout=60)
        assert client.returncode == 0, client.stderr
        assert int(server.stdout.readline()) == n - 1  # all but the first were Fast Open
        assert accepts.stop() == 0 and counts.stop() == 0, accepts.stderr + counts.stderr
    finally:
        server.communicate("end\n", timeout=30)
    assert len(records(accepts)) == n
    assert sum(row["accepts"] for line in counts.json_lines() for row in line["accepts"]) == n

"""tcplife, tcpconnect, tcpaccept and tcpretrans on the host kernel, over a
veth pair between two network namespaces, with exact counts."""
import concurrent.futures
import json
import random
import signal
import subprocess
import sys
import time

import pytest

from conftest import unique_name
from tracers.runtime.kconst import CLSACT_PARENTS

pytestmark = pytest.mark.kernel

N4, N6 = 17, 3  # IPv4 and IPv6 connections of the workload

# Connection k (1-based) carries 1000*k bytes up and 500*k down. Odd k: the
# client closes first; even k: the server does (both FIN orders are covered).
SERVER = r"""
import ctypes, os, select, socket, sys
port, n, ip4, ip6, name = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
ctypes.CDLL(None).prctl(15, name.encode(), 0, 0, 0)  # PR_SET_NAME
listeners = []
for fam, ip in ((socket.AF_INET, ip4), (socket.AF_INET6, ip6)):
    s = socket.socket(fam, socket.SOCK_STREAM)
    if fam == socket.AF_INET6:
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    s.bind((ip, port))
    s.listen(64)
    listeners.append(s)
print(os.getpid(), flush=True)
for k in range(1, n + 1):
    ready, _, _ = select.select(listeners, [], [], 30)
    conn, _ = ready[0].accept()
    got = 0
    while got < 1000 * k:
        got += len(conn.recv(65536))
    conn.sendall(b"s" * (500 * k))
    if k % 2:
        while conn.recv(65536):
            pass
    conn.close()
"""

CLIENT = r"""
import ctypes, json, os, socket, sys
port, n4, n6, ip4, ip6, name = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5], sys.argv[6]
ctypes.CDLL(None).prctl(15, name.encode(), 0, 0, 0)
try:
    socket.create_connection((ip4, port + 1))  # nobody listens: refused
except ConnectionRefusedError:
    pass
ports = []
for k in range(1, n4 + n6 + 1):
    c = socket.create_connection((ip4 if k <= n4 else ip6, port))
    ports.append(c.getsockname()[1])
    c.sendall(b"c" * (1000 * k))
    got = 0
    while got < 500 * k:
        got += len(c.recv(65536))
    if k % 2 == 0:
        while c.recv(65536):
            pass
    c.close()
print(json.dumps({"pid": os.getpid(), "ports": ports}), flush=True)
"""


def start_all(tracer, arg_lists):
    """Start several tracers at once: BCC compiles dominate, run them together."""
    with concurrent.futures.ThreadPoolExecutor(len(arg_lists)) as pool:
        return list(pool.map(tracer, arg_lists))


def records(run):
    return [r for r in run.json_lines() if "summary" not in r]


def test_seventeen_connections(tracer, netns_pair):
    p = netns_pair
    port = random.randrange(20000, 30000, 2)
    life_client, life_server, connects, accepts, connect_counts, accept_counts = start_all(tracer, [
        ["tcplife", "--json", "-4", "--rport", str(port)],
        ["tcplife", "--json", "--lport", str(port)],
        ["tcpconnect", "--json", "--rport", str(port), "--rport", str(port + 1)],
        ["tcpaccept", "--json", "-4", "--lport", str(port)],
        ["tcpconnect", "--json", "-c", "--rport", str(port)],
        ["tcpaccept", "--json", "-c", "--lport", str(port)],
    ])
    srv_name, cli_name = unique_name("srv"), unique_name("cli")
    server = subprocess.Popen(p.exec(p.b, sys.executable, "-c", SERVER, str(port), str(N4 + N6),
                                     p.ip_b, p.ip6_b, srv_name), stdout=subprocess.PIPE, text=True)
    server_pid = int(server.stdout.readline())
    client = subprocess.run(p.exec(p.a, sys.executable, "-c", CLIENT, str(port), str(N4), str(N6),
                                   p.ip_b, p.ip6_b, cli_name),
                            capture_output=True, text=True, timeout=60)
    assert client.returncode == 0, client.stderr
    assert server.wait(30) == 0
    out = json.loads(client.stdout)
    client_pid, ports = out["pid"], out["ports"]
    time.sleep(0.3)  # the last closes run in softirq right after the client exits
    for run in (life_client, life_server, connects, accepts, connect_counts, accept_counts):
        assert run.stop() == 0, run.stderr

    # tcplife, client side: 17 IPv4 records, exact payload bytes each way.
    recs = sorted(records(life_client), key=lambda r: ports.index(r["lport"]))
    assert [r["lport"] for r in recs] == ports[:N4]
    for k, r in enumerate(recs, 1):
        assert (r["bytes_sent"], r["bytes_received"]) == (1000 * k, 500 * k), r
        assert (r["laddr"], r["raddr"], r["rport"], r["family"]) == (p.ip_a, p.ip_b, port, "IPv4")
        assert (r["pid"], r["comm"]) == (client_pid, cli_name)
        assert r["duration_us"] > 0

    # tcplife, server side: all 20, IPv6 included, bytes mirrored.
    recs = sorted(records(life_server), key=lambda r: ports.index(r["rport"]))
    assert [r["rport"] for r in recs] == ports
    for k, r in enumerate(recs, 1):
        assert (r["bytes_sent"], r["bytes_received"]) == (500 * k, 1000 * k), r
        v6 = k > N4
        assert (r["laddr"], r["raddr"]) == ((p.ip6_b, p.ip6_a) if v6 else (p.ip_b, p.ip_a))
        assert r["family"] == ("IPv6" if v6 else "IPv4")
        assert (r["pid"], r["comm"], r["lport"]) == (server_pid, srv_name, port)

    # tcpconnect: 20 established, 1 refused, all by the client.
    recs = records(connects)
    refused = [r for r in recs if r["result"] != "established"]
    assert [(r["rport"], r["result"]) for r in refused] == [(port + 1, "ECONNREFUSED")]
    assert [r["lport"] for r in recs if r["result"] == "established"] == ports
    assert {(r["pid"], r["comm"]) for r in recs} == {(client_pid, cli_name)}

    # tcpaccept -4: 17, owned by the process that listens.
    recs = records(accepts)
    assert [r["rport"] for r in recs] == ports[:N4]
    assert {(r["pid"], r["comm"], r["laddr"], r["lport"], r["raddr"]) for r in recs} == \
        {(server_pid, srv_name, p.ip_b, port, p.ip_a)}

    # -c: counted in the kernel per destination / per service and client.
    (line,) = connect_counts.json_lines()
    assert sorted((c["daddr"], c["dport"], c["connects"], c["failed"]) for c in line["connects"]) == \
        sorted([(p.ip_b, port, N4, 0), (p.ip6_b, port, N6, 0)])
    (line,) = accept_counts.json_lines()
    assert sorted((c["laddr"], c["lport"], c["raddr"], c["accepts"]) for c in line["accepts"]) == \
        sorted([(p.ip_b, port, p.ip_a, N4), (p.ip6_b, port, p.ip6_a, N6)])


# Counts data segments to PORT arriving on the server's veth and, while
# ctl[0] is set, drops them: the client's stack sees a lossy path and
# retransmits (its own transmit succeeded, so these are real retransmits).
DROPPER = r"""
#include <uapi/linux/bpf.h>
#include <uapi/linux/pkt_cls.h>
#include <uapi/linux/if_ether.h>
#include <uapi/linux/in.h>
#include <uapi/linux/ip.h>
#include <uapi/linux/tcp.h>
BPF_ARRAY(ctl, u64, 2);  // [0]: drop now, [1]: data segments seen
int drop_data(struct __sk_buff *skb)
{
    void *data = (void *)(long)skb->data, *end = (void *)(long)skb->data_end;
    struct ethhdr *eth = data;
    struct iphdr *ip = (void *)(eth + 1);
    struct tcphdr *tcp = (void *)(ip + 1);  // no IP options on this path
    if ((void *)(tcp + 1) > end || eth->h_proto != bpf_htons(ETH_P_IP) ||
        ip->protocol != IPPROTO_TCP || tcp->dest != bpf_htons(PORT))
        return TC_ACT_OK;
    if (bpf_ntohs(ip->tot_len) == ip->ihl * 4 + tcp->doff * 4)
        return TC_ACT_OK;  // no payload
    int seen = 1, block = 0;
    u64 *v = ctl.lookup(&seen);
    if (v)
        __sync_fetch_and_add(v, 1);
    v = ctl.lookup(&block);
    return v && *v ? TC_ACT_SHOT : TC_ACT_OK;
}
"""

RETRANS_SERVER = r"""
import socket, sys
s = socket.socket()
s.bind((sys.argv[1], int(sys.argv[2])))
s.listen(1)
print("listening", flush=True)
c, _ = s.accept()
for size, reply in ((10, b"1"), (100, b"2")):
    got = 0
    while got < size:
        got += len(c.recv(size - got))
    c.sendall(reply)
while c.recv(100):
    pass
"""

RETRANS_CLIENT = r"""
import socket, sys
c = socket.create_connection((sys.argv[1], int(sys.argv[2])))
c.sendall(b"w" * 10)
assert c.recv(1) == b"1"
print(c.getsockname()[1], flush=True)
sys.stdin.readline()
c.sendall(b"d" * 100)
assert c.recv(1) == b"2"
c.close()
"""


class Dropper:
    """DROPPER on the clsact ingress of the server's veth; close() removes both."""

    def __init__(self, pair, port):
        from bcc import BPF
        from pyroute2 import NetNS

        from tracers.runtime import machine
        machine.resolve_headers()  # BCC_KERNEL_SOURCE: the fallback header tree
        self.bpf = BPF(text=DROPPER.encode(), cflags=[f"-DPORT={port}"])
        fn = self.bpf.load_func(b"drop_data", BPF.SCHED_CLS)
        self.ctl = self.bpf[b"ctl"]
        self.ns = NetNS(pair.b)
        self.idx = self.ns.link_lookup(ifname=pair.if_b)[0]
        self.ns.tc("add", "clsact", self.idx)
        self.ns.tc("add-filter", "bpf", self.idx, ":1", fd=fn.fd, name="bpfwatch-test-drop",
                   parent=CLSACT_PARENTS["ingress"], classid=1, direct_action=True)

    def set(self, index, value):
        self.ctl[self.ctl.Key(index)] = self.ctl.Leaf(value)

    def get(self, index):
        return self.ctl[self.ctl.Key(index)].value

    def close(self):
        try:
            self.ns.tc("del", "clsact", self.idx)
        finally:
            self.ns.close()
            self.bpf.cleanup()


def test_retransmits_of_one_flow_counted_exactly(tracer, netns_pair):
    p = netns_pair
    port = random.randrange(30000, 40000)
    dropper = Dropper(p, port)
    try:
        events, flows = start_all(tracer, [["tcpretrans", "--json", "--rport", str(port)],
                                           ["tcpretrans", "--json", "-c", "--rport", str(port)]])
        server = subprocess.Popen(p.exec(p.b, sys.executable, "-c", RETRANS_SERVER, p.ip_b, str(port)),
                                  stdout=subprocess.PIPE, text=True)
        assert server.stdout.readline().strip() == "listening"
        client = subprocess.Popen(p.exec(p.a, sys.executable, "-c", RETRANS_CLIENT, p.ip_b, str(port)),
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        lport = int(client.stdout.readline())
        dropper.set(0, 1)
        client.stdin.write("go\n")
        client.stdin.flush()
        deadline = time.monotonic() + 15
        while dropper.get(1) < 4 and time.monotonic() < deadline:  # 2 originals + 2 retransmits
            time.sleep(0.01)
        dropper.set(0, 0)
        assert client.wait(15) == 0 and server.wait(15) == 0
        segments = dropper.get(1)
    finally:
        dropper.close()
    retransmits = segments - 2  # every data segment beyond the two originals
    assert retransmits >= 2
    for run in (events, flows):
        assert run.stop() == 0, run.stderr
    recs = records(events)
    assert len(recs) == retransmits
    assert {(r["laddr"], r["lport"], r["raddr"], r["rport"], r["state"]) for r in recs} == \
        {(p.ip_a, lport, p.ip_b, port, "ESTABLISHED")}
    (line,) = flows.json_lines()
    assert [(f["lport"], f["rport"], f["retransmits"]) for f in line["flows"]] == \
        [(lport, port, retransmits)]


# Entry points of these tracers, as bpftool shows them (15 characters).
OURS = {"on_set_state", "on_accept_retur", "on_retransmit", "on_kfree_skb"}


def our_objects():
    """Programs of these tracers and the links that hold them (others may run concurrently)."""
    progs = json.loads(subprocess.run(["bpftool", "-j", "prog", "show"], capture_output=True,
                                      text=True).stdout or "[]")
    ids = {p["id"] for p in progs if p.get("name") in OURS}
    links = json.loads(subprocess.run(["bpftool", "-j", "link", "show"], capture_output=True,
                                      text=True).stdout or "[]")
    return ids | {("link", l["id"]) for l in links if l.get("prog_id") in ids}


# Every tracer meets one way to end, every way to end two tracers (their
# programs are alike: tracepoints and maps; this keeps the compiles few).
@pytest.mark.parametrize("ending, arg_lists", [
    ("SIGINT", [["tcplife"], ["skbdrop", "--location"]]),
    ("SIGTERM", [["tcpconnect", "-c"], ["tcpaccept"]]),
    ("SIGKILL", [["tcpretrans", "-c"], ["tcplife", "--lport", "22"]]),
])
def test_nothing_left_after(tracer, ending, arg_lists):
    before = our_objects()
    runs = start_all(tracer, arg_lists)
    assert len(our_objects() - before) >= len(arg_lists)
    sig = getattr(signal, ending)
    for run in runs:
        assert run.stop(sig) == (-9 if sig == signal.SIGKILL else 0), run.stderr
    deadline = time.monotonic() + 10  # the kernel frees programs asynchronously
    while our_objects() - before and time.monotonic() < deadline:
        time.sleep(0.2)
    assert our_objects() - before == set()


@pytest.mark.parametrize("name", ["tcplife", "tcpconnect", "tcpaccept", "tcpretrans"])
def test_kprobe_alternative_passes_the_verifier(name):
    """No kprobes here: compile the kprobe alternative and load it (a kprobe
    program type loads without attaching), offsets from this kernel's BTF."""
    from bcc import BPF

    from tracers.runtime import btf
    from tracers.registry import tracer_classes
    from tracers.runtime import machine
    from tracers.runtime.loader import c_include_dir, c_source, cflags_for
    machine.resolve_headers()
    module = tracer_classes()[name]
    alt = module.spec.alternative("kprobe")
    defines = {alt.define: 1, **btf.resolve_offsets(alt.btf_fields)}
    defines.update(module().defines(module_args(module)))
    bpf = BPF(text=c_source(module.spec).encode(),
              cflags=cflags_for(defines) + [f"-I{c_include_dir()}"])
    try:
        for hook in alt.hooks:
            assert bpf.load_func(hook.fn.encode(), BPF.KPROBE).fd >= 0
    finally:
        bpf.cleanup()


def module_args(module):
    from tracers import options
    return options.build_parser(module()).parse_args([])


def test_listener_older_than_the_trace_is_named(tracer, netns_pair):
    """The owner of a listener opened before tracing comes from /proc (in the
    tracer's namespace), since the kernel side never saw its listen()."""
    p = netns_pair
    port = random.randrange(40000, 50000)
    srv_name = unique_name("old")
    server = subprocess.Popen(p.exec(p.b, sys.executable, "-c", SERVER, str(port), "3",
                                     p.ip_b, p.ip6_b, srv_name), stdout=subprocess.PIPE, text=True)
    server_pid = int(server.stdout.readline())
    accepts = tracer(["tcpaccept", "--json", "--lport", str(port)], prefix=p.exec(p.b))
    client = subprocess.run(p.exec(p.a, sys.executable, "-c", CLIENT, str(port), "3", "0",
                                   p.ip_b, p.ip6_b, "cli"), capture_output=True, text=True, timeout=60)
    assert client.returncode == 0 and server.wait(30) == 0, client.stderr
    assert accepts.stop() == 0
    recs = records(accepts)
    assert [r["rport"] for r in recs] == json.loads(client.stdout)["ports"]
    assert {(r["pid"], r["comm"]) for r in recs} == {(server_pid, srv_name)}

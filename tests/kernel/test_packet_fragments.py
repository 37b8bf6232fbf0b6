"""IPv6 extension headers and fragments (issue 16, item 2) through both
packet tracers: tctraffic --block-port (tc) and sockfilter --port (socket
filter) share bpf_c/packet.h. Over a veth pair, MTU 1500: a 3000-byte UDP
datagram leaves a as three fragments (1448 + 1448 + 112 bytes of it)."""
import random
import subprocess
import sys
import time

import pytest

pytestmark = pytest.mark.kernel

# L2 lengths of the three fragments of one 3000-byte datagram (IPv6 40 +
# fragment header 8 + a multiple of 8 bytes of UDP header and payload)
FIRST, MIDDLE, LAST = 14 + 48 + 1448, 14 + 48 + 1448, 14 + 48 + 112
DSTOPTS = 14 + 40 + 8 + 8 + 100  # a 100-byte datagram behind 8 bytes of destination options

SENDER = r"""
import socket, sys
dst, port, count, size, dstopts = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5] == "1"
s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
s.bind(("::", 0))
if dstopts:  # a destination options header: PadN, 4 bytes
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_DSTOPTS, bytes([0, 0, 1, 4, 0, 0, 0, 0]))
for _ in range(count):
    s.sendto(b"f" * size, (dst, port))
"""

RECEIVER = r"""
import socket, sys
s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
s.bind(("::", int(sys.argv[1])))
s.settimeout(1.0)
print("ready", flush=True)
n = 0
try:
    while True:
        s.recv(65536)
        n += 1
except socket.timeout:
    pass
print(n, flush=True)
"""


def send(pair, port, count, size, dstopts=False):
    subprocess.run(pair.exec(pair.a, sys.executable, "-c", SENDER, pair.ip6_b, str(port), str(count),
                             str(size), "1" if dstopts else "0"), check=True, timeout=30)


def receiver(pair, port):
    proc = subprocess.Popen(pair.exec(pair.b, sys.executable, "-c", RECEIVER, str(port)),
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    return proc


def test_blocking_a_port_drops_fragmented_ipv6_datagrams(tracer, netns_pair):
    # on b's ingress: 3 fragmented datagrams and 4 behind destination
    # options, to a blocked port: 0 delivered (all 7 were before). The first
    # fragments (they alone carry ports) are dropped; the 6 later ones pass,
    # port 0, and b can never reassemble them.
    pair, port = netns_pair, random.randrange(20000, 30000)
    recv = receiver(pair, port)
    run = tracer(["tctraffic", pair.if_b, "--json", "--block-port", str(port)], prefix=pair.exec(pair.b))
    send(pair, port, 3, 3000)
    send(pair, port, 4, 100, dstopts=True)
    assert int(recv.communicate(timeout=30)[0]) == 0
    assert run.stop() == 0
    (line,) = run.json_lines()
    assert [(r["direction"], r["rule"], r["packets"], r["bytes"]) for r in line["dropped"]] == \
        [("ingress", f"port {port}", 7, 3 * FIRST + 4 * DSTOPTS)]
    later = [(r["proto"], r["port"], r["packets"], r["bytes"]) for r in line["traffic"]
             if r["direction"] == "ingress" and r["family"] == "IPv6" and r["proto"] != "icmpv6"]
    assert later == [("udp", 0, 6, 3 * (MIDDLE + LAST))]


def test_port_filter_keeps_first_fragments_and_packets_behind_options(tracer, netns_pair):
    # 3 fragmented datagrams and 4 with destination options, to the port:
    # the filter keeps the 3 first fragments and the 4 (it kept none before)
    pair, port = netns_pair, random.randrange(20000, 30000)
    run = tracer(["sockfilter", "-i", pair.if_b, "--json", "--port", str(port)], prefix=pair.exec(pair.b))
    send(pair, port, 3, 3000)
    send(pair, port, 4, 100, dstopts=True)
    time.sleep(0.3)
    assert run.stop() == 0
    (line,) = run.json_lines()
    assert line["matched"] == [{"family": "IPv6", "proto": "udp", "packets": 7,
                                "bytes": 3 * FIRST + 4 * DSTOPTS}]

"""skbdrop on the host kernel: datagrams to a closed UDP port, counted exactly."""
import concurrent.futures
import subprocess
import sys

import pytest

pytestmark = pytest.mark.kernel

N4, N6 = 31, 7  # unusual numbers: nothing else drops exactly these

SEND = r"""
import socket, sys
ip4, ip6, n4, n6 = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
for fam, ip, n in ((socket.AF_INET, ip4, n4), (socket.AF_INET6, ip6, n6)):
    s = socket.socket(fam, socket.SOCK_DGRAM)
    for _ in range(n):
        s.sendto(b"x" * 20, (ip, 9))  # discard port: nobody listens in the namespace
"""


def start_all(tracer, arg_lists):
    with concurrent.futures.ThreadPoolExecutor(len(arg_lists)) as pool:
        return list(pool.map(tracer, arg_lists))


def no_socket(line):
    return {r["protocol"]: r for r in line["drops"] if r["reason"] == "no_socket"}


def test_closed_port_drops_counted_by_reason_protocol_and_location(tracer, netns_pair):
    p = netns_pair
    in_ns, everywhere = start_all(tracer, [
        ["skbdrop", "--json", "--location", "--netns", p.b, "-T", "100"],
        ["skbdrop", "--json", "-T", "100"],
    ])
    subprocess.run(p.exec(p.a, sys.executable, "-c", SEND, p.ip_b, p.ip6_b, str(N4), str(N6)),
                   check=True, timeout=30)
    for run in (in_ns, everywhere):
        assert run.stop() == 0, run.stderr
    (line,) = in_ns.json_lines()
    rows = no_socket(line)
    # In the receiving namespace: exactly what was sent, where UDP found no socket.
    assert {proto: r["count"] for proto, r in rows.items()} == {"IPv4": N4, "IPv6": N6}
    assert rows["IPv4"]["location"].startswith("__udp4_lib_rcv+0x")
    assert rows["IPv6"]["location"].startswith("__udp6_lib_rcv+0x")
    # The unfiltered count is global (the host may drop others' packets too).
    (line,) = everywhere.json_lines()
    rows = no_socket(line)
    assert rows["IPv4"]["count"] >= N4 and rows["IPv6"]["count"] >= N6
    assert line["map_update_failures"] == 0


def test_interval_and_count_print_that_many_reports(tracer):
    run = tracer(["skbdrop", "--json", "0.3", "3"])
    assert run.wait(30) == 0
    lines = run.json_lines()
    assert len(lines) == 3 and all(0.2 < line["interval_s"] < 1.0 for line in lines)

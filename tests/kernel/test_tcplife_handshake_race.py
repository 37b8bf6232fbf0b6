"""tcplife counts a connection once when two CPUs complete its handshake at
once. Both find the listener's request socket and clone a child; the loser
dies SYN_RECV -> CLOSE on the spot (inet_ehash_nolisten). The race is
provoked on purpose (handshake_race.py) and witnessed by the kernel's own
event in a tracefs instance, so the test knows it really happened."""
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tracers.runtime import machine

pytestmark = pytest.mark.kernel
RACE = Path(__file__).with_name("handshake_race.py")
TCP_SYN_RECV, TCP_CLOSE = 3, 7

# Each accepted connection is reset at once (SO_LINGER 0): ESTABLISHED -> CLOSE.
SERVER = r"""
import socket, struct, sys
ip, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
s = socket.socket()
s.bind((ip, port))
s.listen(1024)
print("ready", flush=True)
for _ in range(n):
    c, _ = s.accept()
    c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    c.close()
"""


class DiedInSynRecv:
    """The kernel's inet_sock_set_state events SYN_RECV -> CLOSE from port,
    counted in a tracefs instance of our own."""

    def __init__(self, port: int):
        machine.mount_pseudo_filesystems()
        self.dir = Path(machine.TRACEFS, "instances", f"bpfwatch-test-{os.getpid()}")
        self.dir.mkdir()
        self.event = self.dir / "events/sock/inet_sock_set_state"
        (self.event / "filter").write_text(
            f"oldstate == {TCP_SYN_RECV} && newstate == {TCP_CLOSE} && sport == {port}")
        (self.event / "enable").write_text("1")

    def count(self) -> int:
        (self.event / "enable").write_text("0")
        return sum(not line.startswith("#") for line in (self.dir / "trace").read_text().splitlines())

    def close(self) -> None:
        (self.event / "enable").write_text("0")
        self.dir.rmdir()


def mac(ns: str, dev: str) -> str:
    out = subprocess.run(["ip", "-j", "-n", ns, "link", "show", dev], capture_output=True, text=True)
    return json.loads(out.stdout)[0]["address"]


def test_tcplife_counts_a_connection_once_when_two_cpus_complete_its_handshake(tracer, netns_pair):
    p, n = netns_pair, 30
    port = random.randrange(20000, 30000)
    spoofed = p.ip_a.rsplit(".", 1)[0] + ".3"  # a's stack must not answer the SYN-ACKs
    subprocess.run(["ip", "-n", p.b, "neigh", "replace", spoofed, "lladdr", mac(p.a, p.if_a),
                    "dev", p.if_b, "nud", "permanent"], check=True)
    life = tracer(["tcplife", "--json", "--lport", str(port)])
    witness = DiedInSynRecv(port)
    try:
        server = subprocess.Popen(p.exec(p.b, sys.executable, "-c", SERVER, p.ip_b, str(port), str(n)),
                                  stdout=subprocess.PIPE, text=True)
        assert server.stdout.readline() == "ready\n"
        race = subprocess.run(p.exec(p.a, sys.executable, str(RACE), p.if_a, spoofed, p.ip_b,
                                     mac(p.b, p.if_b), str(port), str(n)),
                              capture_output=True, text=True, timeout=120)
        assert race.returncode == 0, race.stderr
        assert server.wait(30) == 0
        time.sleep(0.3)
        losers = witness.count()
    finally:
        witness.close()
    assert life.stop() == 0, life.stderr
    recs = [r for r in life.json_lines() if "summary" not in r]
    # the race really happened (about one handshake in three on two CPUs)
    assert losers >= 1, "the workload did not provoke the race"
    assert sorted(r["rport"] for r in recs) == sorted(json.loads(race.stdout))
    assert {(r["raddr"], r["bytes_sent"], r["bytes_received"]) for r in recs} == {(spoofed, 0, 0)}

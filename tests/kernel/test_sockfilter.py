"""sockfilter in a veth namespace pair: the pcap holds exactly the matching packets."""
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ROOT

pytestmark = pytest.mark.kernel

SIZE = 120
PORT_X, PORT_Y = 6001, 6002
SENDER = r"""
import socket, sys
dst, port, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
s = socket.socket(socket.AF_INET6 if ":" in dst else socket.AF_INET, socket.SOCK_DGRAM)
for i in range(count):
    s.sendto(bytes([i]) * int(sys.argv[4]), (dst, port))
"""


def send(pair, dst, port, count, size=SIZE):
    # From a to b. Nothing listens in b: its ICMP port-unreachable replies are
    # on the wire too, so every filter below pins the protocol or the port.
    subprocess.run(pair.exec(pair.a, sys.executable, "-c", SENDER, dst, str(port), str(count), str(size)),
                   check=True, timeout=30)


def read_pcap(path: Path) -> tuple[int, list[tuple[int, int, bytes, int]]]:
    """A small independent parser: (linktype, [(ts_sec, ts_usec, data, orig_len)])."""
    raw = path.read_bytes()
    magic, major, minor, _zone, _sig, _snap, linktype = struct.unpack_from("<IHHiIII", raw)
    assert (magic, major, minor) == (0xA1B2C3D4, 2, 4)
    packets, off = [], 24
    while off < len(raw):
        sec, usec, incl, orig = struct.unpack_from("<IIII", raw, off)
        packets.append((sec, usec, raw[off + 16:off + 16 + incl], orig))
        off += 16 + incl
    assert off == len(raw)
    return linktype, packets


def start(tracer, pair, *args):
    return tracer(["sockfilter", "-i", pair.if_b, "--json", *args], prefix=pair.exec(pair.b))


def test_pcap_holds_exactly_the_matching_packets(tracer, netns_pair, tmp_path):
    pair, out = netns_pair, tmp_path / "x.pcap"
    began = time.time()
    run = start(tracer, pair, "--port", str(PORT_X), "-w", str(out))
    send(pair, pair.ip_b, PORT_X, 13)
    send(pair, pair.ip_b, PORT_Y, 9)
    time.sleep(0.3)
    assert run.stop() == 0
    [line] = run.json_lines()
    assert (line["packets"], line["written"], line["socket_drops"]) == (13, 13, 0)
    assert line["matched"] == [{"family": "IPv4", "proto": "udp", "packets": 13,
                                "bytes": 13 * (14 + 20 + 8 + SIZE)}]
    linktype, packets = read_pcap(out)
    assert linktype == 1 and len(packets) == 13
    for i, (sec, usec, data, orig) in enumerate(packets):
        assert began <= sec + usec / 1e6 <= time.time() and usec < 1_000_000
        assert len(data) == orig == 14 + 20 + 8 + SIZE
        assert data[12:14] == b"\x08\x00" and data[14 + 9] == 17  # IPv4, UDP
        assert data[14 + 16:14 + 20] == bytes(map(int, pair.ip_b.split(".")))
        assert struct.unpack_from("!H", data, 14 + 20 + 2)[0] == PORT_X
        assert data[-SIZE:] == bytes([i]) * SIZE  # in order, intact
    if shutil.which("tcpdump"):
        text = subprocess.run(["tcpdump", "-nn", "-r", str(out)], capture_output=True, text=True).stdout
        lines = text.strip().splitlines()
        assert len(lines) == 13
        assert all(f"> {pair.ip_b}.{PORT_X}: UDP, length {SIZE}" in l for l in lines), text


def test_host_and_proto_counts_without_writing(tracer, netns_pair):
    pair = netns_pair
    run = start(tracer, pair, "--host", pair.ip_a, "--proto", "udp", "0.3")
    send(pair, pair.ip_b, PORT_X, 17)      # IPv4 from ip_a: matches
    send(pair, pair.ip6_b, PORT_X, 6)      # IPv6: another host
    pair.run(pair.a, f"ping -n -q -c 4 -i 0.01 {pair.ip_b}")  # not UDP
    time.sleep(0.4)
    assert run.stop() == 0
    lines = run.json_lines()
    assert len(lines) >= 2
    assert sum(l["packets"] for l in lines) == 17 and sum(l["written"] for l in lines) == 0
    assert sum(l["bytes"] for l in lines) == 17 * (14 + 20 + 8 + SIZE)


def held_prog_ids(pid: int) -> set:
    """Program ids the process holds open (BCC keeps the fds)."""
    ids = set()
    for fd in os.listdir(f"/proc/{pid}/fdinfo"):
        try:
            text = Path(f"/proc/{pid}/fdinfo/{fd}").read_text()
        except OSError:
            continue
        if "prog_type:\t1\n" in text:  # BPF_PROG_TYPE_SOCKET_FILTER
            ids |= {int(l.split()[1]) for l in text.splitlines() if l.startswith("prog_id:")}
    return ids


def progs_exist(ids) -> set:
    out = subprocess.run(["bpftool", "-j", "prog", "show"], capture_output=True, text=True).stdout
    return ids & {p["id"] for p in json.loads(out)}


@pytest.mark.parametrize("ending", ["SIGINT", "SIGTERM", "SIGKILL"])
def test_program_goes_with_the_socket(tracer, netns_pair, tmp_path, ending):
    pair = netns_pair
    run = start(tracer, pair, "--port", str(PORT_X), "-w", str(tmp_path / "y.pcap"))
    ids = held_prog_ids(run.pid)
    assert len(ids) == 1
    assert run.stop(getattr(signal, ending)) == (-9 if ending == "SIGKILL" else 0)
    deadline = time.monotonic() + 10
    while progs_exist(ids) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert progs_exist(ids) == set()


@pytest.mark.parametrize("args, words", [
    (["--port", "0"], "not a port"),
    (["--host", "10.0.0.256"], "not an IPv4 or IPv6"),
    (["--proto", "tcpx"], "not a protocol"),
    (["-i", "no-such-if0"], "no interface"),
    (["--port", "1", "--port", "2", "--port", "3", "--port", "4", "--port", "5"], "at most 4"),
    (["-w", "/nonexistent-dir/x.pcap", "-d", "0.1"], "-w '/nonexistent-dir/x.pcap': No such file"),
    (["-w", "/proc/self/exe", "-d", "0.1"], "is a symbolic link: not following it"),
    (["-w", "/tmp", "-d", "0.1"], "is a directory"),
    (["-w", "", "-d", "0.1"], "-w: the file name is empty"),
    (["-i", "lo", "-w", "/proc/version", "-d", "0.1"], "cannot write /proc/version: Input/output error"),
])
def test_bad_input_gets_one_line(args, words):
    proc = subprocess.run([sys.executable, "-m", "tracers", "sockfilter", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and words in lines[0], proc.stderr


LOOPBACK_SENDER = r"""
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for i in range(int(sys.argv[2])):
    s.sendto(bytes([i]) * 50, ("127.0.0.1", int(sys.argv[1])))
"""


def test_loopback_packets_are_seen_once(tracer, netns_pair, tmp_path):
    # 10 datagrams over lo: 10 counted and 10 written (not 20: the packet
    # socket also sees each one leave), as tcpdump -i lo records them
    pair, out = netns_pair, tmp_path / "lo.pcap"
    run = tracer(["sockfilter", "-i", "lo", "--json", "--port", str(PORT_X), "-w", str(out)],
                 prefix=pair.exec(pair.a))
    subprocess.run(pair.exec(pair.a, sys.executable, "-c", LOOPBACK_SENDER, str(PORT_X), "10"),
                   check=True, timeout=30)
    time.sleep(0.3)
    assert run.stop() == 0
    [line] = run.json_lines()
    assert (line["packets"], line["written"]) == (10, 10)
    _linktype, packets = read_pcap(out)
    assert [data[-50:] for _s, _u, data, _o in packets] == [bytes([i]) * 50 for i in range(10)]


def test_write_dash_is_standard_output_for_tcpdump(netns_pair, tmp_path):
    # `sockfilter -w - | tcpdump -r -`: tcpdump reads the 10 packets; the
    # summary is on standard error; no file named "-" appears
    pair, err = netns_pair, tmp_path / "err"
    pipeline = (f"{sys.executable} -m tracers sockfilter -i {pair.if_b} --port {PORT_X} --json "
                f"-w - -d 4 2>{err} | tcpdump -nn -r - 2>/dev/null")
    proc = subprocess.Popen(pair.exec(pair.b, "sh", "-c", f"cd {tmp_path} && PYTHONPATH={ROOT} {pipeline}"),
                            stdout=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while "Hit Ctrl-C" not in (err.read_text() if err.exists() else ""):
        assert proc.poll() is None and time.monotonic() < deadline, err.read_text()
        time.sleep(0.05)
    send(pair, pair.ip_b, PORT_X, 10)
    lines = proc.communicate(timeout=60)[0].splitlines()
    assert proc.returncode == 0
    assert len(lines) == 10 and all(f"> {pair.ip_b}.{PORT_X}: UDP, length {SIZE}" in l for l in lines), lines
    [summary] = [json.loads(l) for l in err.read_text().splitlines() if l.startswith("{")]
    assert (summary["packets"], summary["written"]) == (10, 10)
    assert not (tmp_path / "-").exists()

"""Network tracers without a kernel: options, -D filters, record decoding, output."""
import argparse
import ctypes
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tracers.spec import UsageError

from tracers import decoders, options
from tracers.tools import skbdrop
from tracers.tools import tcpaccept
from tracers.tools import _tcp as tcp
from tracers.tools import tcpconnect
from tracers.tools import tcplife
from tracers.tools import tcpretrans

ROOT = Path(__file__).resolve().parents[2]


class Event(ctypes.Structure):
    """The layout BCC hands over for a life/connect event (fields by name)."""
    _fields_ = [("ts", ctypes.c_uint64), ("duration_ns", ctypes.c_uint64),
                ("latency_ns", ctypes.c_uint64), ("bytes_sent", ctypes.c_uint64),
                ("bytes_received", ctypes.c_uint64), ("cgroup_id", ctypes.c_uint64),
                ("pid", ctypes.c_uint32),
                ("err", ctypes.c_int32), ("established", ctypes.c_uint32),
                ("state", ctypes.c_uint32),
                ("family", ctypes.c_uint16), ("lport", ctypes.c_uint16),
                ("rport", ctypes.c_uint16), ("tuple_pad", ctypes.c_uint16),
                ("laddr", ctypes.c_ubyte * 16), ("raddr", ctypes.c_ubyte * 16),
                ("comm", ctypes.c_char * 16)]


def event(family, laddr, raddr, **kw):
    e = Event(family=family, **kw)
    raw_l = socket.inet_pton(family, laddr)
    raw_r = socket.inet_pton(family, raddr)
    e.laddr[:len(raw_l)] = list(raw_l)
    e.raddr[:len(raw_r)] = list(raw_r)
    return e


def parse(module, argv):
    parser = options.build_parser(module.TRACER())
    return parser.parse_args(argv)


@pytest.mark.parametrize("text, ok", [("1", True), ("65535", True), ("0", False),
                                      ("65536", False), ("70000", False), ("http", False)])
def test_port_number(text, ok):
    if ok:
        assert tcp.port_number(text) == int(text)
    else:
        with pytest.raises(argparse.ArgumentTypeError):
            tcp.port_number(text)


def test_port_filters_fill_every_slot():
    args = parse(tcplife, ["--lport", "80", "--lport", "443", "--rport", "5432", "-6"])
    out = tcplife.TRACER().defines(args)
    assert [out[f"LPORT_{i}"] for i in range(8)] == [80, 443] + [80] * 6
    assert [out[f"RPORT_{i}"] for i in range(8)] == [5432] * 8
    assert out["FILTER_FAMILY"] == socket.AF_INET6 and "COUNT_ONLY" not in out
    assert not any(k.startswith("LPORT") for k in tcplife.TRACER().defines(parse(tcplife, [])))


def test_more_ports_than_slots_is_refused():
    args = parse(tcplife, [a for p in range(1, 10) for a in ("--lport", str(p))])
    with pytest.raises(UsageError, match="at most 8 --lport"):
        tcplife.TRACER().defines(args)


def test_mode_defines():
    assert tcpconnect.TRACER().defines(parse(tcpconnect, ["-c"]))["COUNT_ONLY"] == 1
    assert "COUNT_ONLY" not in tcpaccept.TRACER().defines(parse(tcpaccept, ["-4"]))
    assert "COUNT_ONLY" not in tcpretrans.TRACER().defines(parse(tcpretrans, []))
    counting = tcpretrans.TRACER().defines(parse(tcpretrans, ["-c"]))
    assert counting.pop("TP_RETRANSMIT_ERR") in (0, 1)  # this kernel's tracepoint format
    assert counting == {"COUNT_FLOWS": 1, "COUNT_ONLY": 1, "PORT_SLOTS": 8}
    # the exporter runs the CLI defaults plus exporter_defines: counting only
    for module in (tcplife, tcpretrans, tcpconnect, tcpaccept):
        merged = {**module.TRACER().defines(parse(module, [])), **module.SPEC.exporter_defines}
        assert merged["COUNT_ONLY"] == 1


def test_count_only_is_the_one_spelling():
    """Counting in the kernel instead of streaming is spelled one way, in C and Python."""
    from pathlib import Path
    from tracers.registry import tracer_classes
    c_dir = Path(__file__).parents[2] / "bpf_c"
    text = "".join(p.read_text() for p in sorted(c_dir.iterdir()) if p.suffix in (".c", ".h"))
    others = ("EXPORTER_COUNTS", "COUNT_MODE", "EMIT_EVENTS")
    assert [old for old in others if old in text] == []
    for tracer in tracer_classes().values():
        assert not set(tracer.spec.exporter_defines) & set(others), tracer.spec.name


@pytest.mark.parametrize("family, laddr, raddr", [
    (socket.AF_INET, "10.77.1.1", "10.77.1.2"),
    (socket.AF_INET6, "fd77:1::1", "fd77:1::2"),
])
def test_tcplife_record_and_line(family, laddr, raddr):
    e = event(family, laddr, raddr, ts=2_000_000_000, duration_ns=1_234_567, bytes_sent=17000,
              bytes_received=8500, pid=42, lport=40000, rport=8080, comm=b"cli\x1b[31m", cgroup_id=9)
    rec = tcplife.to_record(e, boot_offset=1000.0)
    assert rec == {"time": 1002.0, "pid": 42, "comm": "cli\\x1b[31m", "cgroup_id": 9,
                   "family": "IPv4" if family == socket.AF_INET else "IPv6",
                   "laddr": laddr, "lport": 40000, "raddr": raddr, "rport": 8080,
                   "bytes_sent": 17000, "bytes_received": 8500, "duration_us": 1234}
    line = tcplife.format_line(rec)
    assert line.split()[1:] == ["42", "cli\\x1b[31m", laddr, "40000", raddr, "8080",
                                "17000", "8500", "1.23"]
    assert tcplife.format_line(rec, micro=True).endswith(" 1234")


@pytest.mark.parametrize("established, err, result", [
    (1, 0, "established"), (0, 111, "ECONNREFUSED"), (0, 110, "ETIMEDOUT"), (0, 0, "closed")])
def test_tcpconnect_result(established, err, result):
    e = event(socket.AF_INET, "10.0.0.1", "10.0.0.2", established=established, err=err,
              latency_ns=250_000, lport=5000, rport=443)
    rec = tcpconnect.to_record(e, 0.0)
    assert (rec["result"], rec["latency_us"], rec["rport"]) == (result, 250, 443)
    assert tcpconnect.format_line(rec).split()[-2:] == ["0.250", result]


def test_tcpaccept_and_tcpretrans_lines():
    e = event(socket.AF_INET6, "fd77::2", "fd77::1", pid=7, lport=22, rport=50000, comm=b"sshd",
              state=1)
    acc = tcpaccept.to_record(e, 0.0)
    assert tcpaccept.format_line(acc).split()[1:] == ["7", "sshd", "IPv6", "fd77::1", "50000",
                                                      "fd77::2", "22"]
    ret = tcpretrans.to_record(e, 0.0)
    assert ret["state"] == "ESTABLISHED"
    assert tcpretrans.format_line(ret).split()[1:] == ["IPv6", "[fd77::2]:22", "R>",
                                                      "[fd77::1]:50000", "ESTABLISHED"]


@pytest.mark.parametrize("addr, port, text", [("10.0.0.1", 80, "10.0.0.1:80"),
                                              ("fd77::1", 443, "[fd77::1]:443")])
def test_endpoint(addr, port, text):
    assert tcp.endpoint(addr, port) == text


@pytest.mark.parametrize("value, name", [(0x0800, "IPv4"), (0x86DD, "IPv6"), (0x0806, "ARP"),
                                         (0, "0x0000"), (0x88B5, "0x88b5")])
def test_eth_proto(value, name):
    assert decoders.eth_proto(value) == name
    assert decoders.DECODERS["eth_proto"](ctypes.c_uint32(value)) == name


def test_eth_proto_refuses_out_of_range():
    with pytest.raises(decoders.DecodeError):
        decoders.eth_proto(0x10000)


def test_skbdrop_table_decodes_drops_as_the_exporter_labels_them():
    class DropKey(ctypes.Structure):
        _fields_ = [("reason", ctypes.c_uint32), ("protocol", ctypes.c_uint16)]
    tracer = skbdrop.TRACER()
    table = tracer.tables(options.build_parser(tracer).parse_args([]))[0]
    try:
        decoders.set_drop_reasons({3: "SKB_DROP_REASON_NO_SOCKET"})
        before = table.read([(DropKey(3, 0x800), ctypes.c_uint64(10)), (DropKey(2, 0x86DD), 4)])
        now = table.read([(DropKey(3, 0x800), 41), (DropKey(2, 0x86DD), 4), (DropKey(5, 0x800), 2)])
    finally:
        decoders.set_drop_reasons({})
    rows = table.rows(now, before)
    assert rows == [{"reason": "no_socket", "protocol": "IPv4", "count": 31},
                    {"reason": "reason_5", "protocol": "IPv4", "count": 2}]
    assert table.text(rows)[1].split() == ["no_socket", "IPv4", "31"]


def test_skbdrop_netns_by_path_and_name(tmp_path):
    assert skbdrop.netns_inode("/proc/self/ns/net") == os.stat("/proc/self/ns/net").st_ino
    with pytest.raises(UsageError, match="--netns 'no-such-ns'"):
        skbdrop.netns_inode("no-such-ns")
    # a file that exists but is not a network namespace (issue 11: it was accepted)
    for other in ("/etc/passwd", "/proc/self/ns/mnt"):
        with pytest.raises(UsageError, match="is not a network namespace"):
            skbdrop.netns_inode(other)


def bpfwatch(*args):
    return subprocess.run([sys.executable, "-m", "tracers", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("args, words", [
    (["tcplife", "--lport", "70000"], "a port is 1 to 65535"),
    (["tcplife", "--rport", "http"], "not a port number"),
    ([*"tcplife --lport 1 --lport 2 --lport 3 --lport 4 --lport 5 --lport 6 --lport 7 "
       "--lport 8 --lport 9".split()], "at most 8 --lport"),
    (["tcpconnect", "-4", "-6"], "not allowed with"),
    (["tcpretrans", "-p", str(os.getpid())], "not offered: tcpretrans's programs run where no"),
    (["skbdrop", "--comm", "bash"], "not offered"),
    (["skbdrop", "--netns", "/no/such/netns"], "No such file"),
    (["tcpaccept", "-c", "5"], "unrecognized arguments"),
])
def test_bad_input_gets_one_line(args, words):
    proc = bpfwatch(*args)
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert words in lines[0] and "Traceback" not in proc.stderr


@pytest.mark.parametrize("name", ["tcplife", "tcpconnect", "tcpaccept", "tcpretrans", "skbdrop"])
def test_help_ends_with_examples(name):
    proc = bpfwatch(name, "--help")
    assert proc.returncode == 0
    assert f"bpfwatch {name}" in proc.stdout.split("examples:")[1]


def test_listening_owners_from_a_proc_tree(tmp_path):
    (tmp_path / "net").mkdir()
    head = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
    (tmp_path / "net" / "tcp").write_text(
        head + "   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 111 1\n"
        "   1: 0100007F:9C40 0100007F:1F90 01 00000000:00000000 00:00000000 00000000     0        0 222 1\n")
    (tmp_path / "net" / "tcp6").write_text(
        head + "   0: 00000000000000000000000000000000:0016 00000000000000000000000000000000:0000 0A "
        "00000000:00000000 00:00000000 00000000     0        0 333 1\n")
    for pid, comm, inodes in ((10, b"nginx\n", [111, 222]), (11, b"sshd\n", [333]), (12, b"x\n", [111])):
        fd = tmp_path / str(pid) / "fd"
        fd.mkdir(parents=True)
        (tmp_path / str(pid) / "comm").write_bytes(comm)
        for n, inode in enumerate(inodes):
            (fd / str(n)).symlink_to(f"socket:[{inode}]")
        (fd / "9").symlink_to("/dev/null")
    assert tcp.listening_owners(str(tmp_path)) == {
        (socket.AF_INET, 8080): (10, b"nginx"), (socket.AF_INET6, 22): (11, b"sshd")}

"""Table-driven tests for tracers.decoders (no root, no bcc)."""
import ctypes
import signal
import socket
import sys

import pytest

from tracers import decoders as d


def host_int(raw: bytes) -> int:
    """What BCC gives for a network-order field: its bytes read in host order."""
    return int.from_bytes(raw, sys.byteorder)


LOOPBACK4 = bytes([127, 0, 0, 1])
LOOPBACK6 = socket.inet_pton(socket.AF_INET6, "::1")
DOC6 = socket.inet_pton(socket.AF_INET6, "2001:db8::1")
MAPPED = socket.inet_pton(socket.AF_INET6, "::ffff:127.0.0.1")

# (decoder, args, expected) -- every registered decoder must appear here.
CASES = [
    ("int", (42,), "42"),
    ("cgroup", (ctypes.c_uint64(4242),), "4242"),
    ("int", (-3,), "-3"),
    ("int", (ctypes.c_uint64(2**64 - 1),), "18446744073709551615"),
    ("inet4", (host_int(LOOPBACK4),), "127.0.0.1"),
    ("inet4", (LOOPBACK4,), "127.0.0.1"),
    ("inet4", (ctypes.c_uint32(host_int(LOOPBACK4)),), "127.0.0.1"),
    ("inet6", (LOOPBACK6,), "::1"),
    ("inet6", (host_int(LOOPBACK6),), "::1"),
    ("inet6", ((ctypes.c_ubyte * 16).from_buffer_copy(DOC6),), "2001:db8::1"),
    ("inet6", ((ctypes.c_ulonglong * 2).from_buffer_copy(LOOPBACK6),), "::1"),
    ("inet6", (MAPPED,), "::ffff:127.0.0.1"),
    ("inet_addr", (host_int(LOOPBACK4),), "127.0.0.1"),
    ("inet_addr", (LOOPBACK6,), "::1"),
    ("inet_addr", (host_int(LOOPBACK6),), "::1"),
    ("inet_addr", (0,), "0.0.0.0"),
    ("inet_addr", (0, 10), "::"),
    ("inet_addr", (host_int(LOOPBACK4), socket.AF_INET), "127.0.0.1"),
    ("port", (host_int((8080).to_bytes(2, "big")),), "8080"),
    ("port", (b"\x1f\x90",), "8080"),
    ("port", (0,), "0"),
    ("port_host", (8080,), "8080"),
    ("port_host", (ctypes.c_uint16(443),), "443"),
    ("errno_name", (2,), "ENOENT"),
    ("errno_name", (-2,), "ENOENT"),
    ("errno_name", (-11,), "EAGAIN"),
    ("errno_name", (ctypes.c_int(-13),), "EACCES"),
    ("errno_name", (-95,), "EOPNOTSUPP"),
    ("errno_name", (35,), "EDEADLK"),
    ("errno_name", (-512,), "ERESTARTSYS"),
    ("errno_name", (-524,), "ENOTSUPP"),
    ("errno_name", (-9999,), "E9999"),
    ("errno_result", (0,), "ok"),
    ("errno_result", (ctypes.c_uint32(2),), "ENOENT"),
    ("errno_result", (-13,), "EACCES"),
    ("syscall_name", (0,), "read"),
    ("syscall_name", (59,), "execve"),
    ("syscall_name", (257,), "openat"),
    ("syscall_name", (9999,), "syscall_9999"),
    ("syscall_name", (-1,), "syscall_-1"),
    ("signal_name", (9,), "SIGKILL"),
    ("signal_name", (17,), "SIGCHLD"),
    ("signal_name", (31,), "SIGSYS"),
    ("signal_name", (0,), "0"),
    ("signal_name", (34,), "SIGRT_2"),
    ("signal_name", (64,), "SIGRT_32"),
    ("signal_name", (65,), "signal_65"),
    ("tcp_state", (1,), "ESTABLISHED"),
    ("tcp_state", (2,), "SYN_SENT"),
    ("tcp_state", (7,), "CLOSE"),
    ("tcp_state", (10,), "LISTEN"),
    ("tcp_state", (12,), "NEW_SYN_RECV"),
    ("tcp_state", (0,), "state_0"),
    ("tcp_state", (99,), "state_99"),
    ("ip_proto", (6,), "tcp"),
    ("ip_proto", (17,), "udp"),
    ("ip_proto", (1,), "icmp"),
    ("ip_proto", (58,), "icmpv6"),
    ("ip_proto", (132,), "proto_132"),
    ("address_family", (2,), "IPv4"),
    ("address_family", (10,), "IPv6"),
    ("address_family", (1,), "af_1"),
    ("tc_direction", (0,), "ingress"),
    ("tc_direction", (1,), "egress"),
    ("tc_direction", (7,), "direction_7"),
    ("tc_block_reason", (1,), "cidr"),
    ("tc_block_reason", (2,), "port"),
    ("text", (b"/etc/passwd\0garbage after NUL",), "/etc/passwd"),
    ("text", (b"caf\xc3\xa9",), "café"),
    ("text", (b"\xff\xfeok",), "\ufffd\ufffdok"),
    ("text", (b"a\nb\x1bc\x7fd",), "a\ufffdb\ufffdc\ufffdd"),
    ("text", ("evil\u202etxt.exe",), "evil\ufffdtxt.exe"),
    ("text", (b"/" + b"a" * 300,), "/" + "a" * 254 + "…"),
    ("text", (b"a" * 256,), "a" * 256),
    ("text", (b"abcdef", 4), "abc…"),
    ("text", (bytearray(b"x\0y"),), "x"),
    ("text", ("already str\0tail",), "already str"),
    ("comm", (b"bash\0\0\0\0\0\0\0\0\0\0\0\0",), "bash"),
    ("comm", (b"systemd-journal\0",), "systemd-journal"),
    ("comm", (ctypes.create_string_buffer(b"nginx", 16),), "nginx"),
    ("comm", (b"0123456789abcdefXYZ",), "0123456789abcde…"),  # no kernel comm: cut, marked
    ("comm", (b"a\tb\xff\xef\xbf\xbd\0stale",), "a\\x09b\\xff\ufffd"),  # escaped: all three differ
    ("comm", (b"back\\slash\x1b[0m\0",), "back\\\\slash\\x1b[0m"),
    ("comm", (b"0123456789abcd\xc3\xa9",), "0123456789abcd\\xc3…"),  # 16 bytes: é cut in half
    ("escaped", (b"a\tb\xff\\\0after NUL",), "a\\x09b\\xff\\\\"),
    ("escaped", ("caf\u00e9 \ufffd".encode(),), "caf\u00e9 \ufffd"),
    ("drop_reason", (3, {3: "SKB_DROP_REASON_NO_SOCKET"}), "no_socket"),
    ("drop_reason", (2, {2: "SKB_DROP_REASON_NOT_SPECIFIED"}), "not_specified"),
    ("drop_reason", (77, {3: "SKB_DROP_REASON_NO_SOCKET"}), "reason_77"),
    ("drop_reason", (77,), "reason_77"),
    ("eth_proto", (0x0800,), "IPv4"),
    ("eth_proto", (0x86DD,), "IPv6"),
    ("eth_proto", (0,), "0x0000"),
    ("eth_proto", (0x88B5,), "0x88b5"),
]

# (decoder, args) that must raise DecodeError
BAD = [
    ("inet4", (b"\x01\x02\x03",)),
    ("inet4", (1 << 32,)),
    ("inet4", (-1,)),
    ("inet4", ("127.0.0.1",)),
    ("inet6", (b"\x00" * 15,)),
    ("inet6", (1 << 128,)),
    ("inet_addr", (0, 1)),
    ("inet_addr", (b"\x00" * 5,)),
    ("port", (70000,)),
    ("port", (-1,)),
    ("port", (b"\x00",)),
    ("port_host", (65536,)),
    ("errno_name", ("ENOENT",)),
    ("errno_result", ("ok",)),
    ("syscall_name", (None,)),
    ("text", (123,)),
    ("text", (b"abc", 0)),
    ("comm", (None,)),
    ("comm", ("already text",)),  # escaped needs the raw bytes
    ("ksym", (-1,)),
    ("disk_name", (1 << 32,)),
    ("eth_proto", (0x10000,)),
]


def test_every_decoder_has_cases():
    assert {name for name, _, _ in CASES} | {"ksym", "disk_name"} == set(d.DECODERS)


@pytest.mark.parametrize("name,args,expected", CASES)
def test_decode(name, args, expected, monkeypatch):
    # The cases assume no drop-reason table was loaded by an earlier test.
    monkeypatch.setattr(d, "_drop_reasons", {})
    assert d.DECODERS[name](*args) == expected


@pytest.mark.parametrize("name,args", BAD)
def test_decode_error(name, args):
    with pytest.raises(d.DecodeError):
        d.DECODERS[name](*args)


@pytest.mark.parametrize("name", sorted(d.DECODERS))
@pytest.mark.parametrize("junk", [None, object(), 1.5, "x", [1, 2], b"", 10**40, -(10**40)])
def test_only_decode_error_escapes(name, junk):
    try:
        out = d.DECODERS[name](junk)
    except d.DecodeError:
        return
    assert isinstance(out, str)


def test_decode_error_is_value_error():
    assert issubclass(d.DecodeError, ValueError)


@pytest.mark.parametrize("n", range(1, 32))
def test_signal_names_match_libc(n):
    try:
        libc = signal.Signals(n).name
    except ValueError:
        pytest.skip("libc has no name")
    aliases = {"SIGIOT": "SIGABRT", "SIGPOLL": "SIGIO", "SIGCLD": "SIGCHLD"}
    assert d.signal_name(n) == aliases.get(libc, libc)


@pytest.mark.parametrize("name,nr", [("read", 0), ("openat", 257), ("execve", 59), ("bpf", 321)])
def test_syscall_number(name, nr):
    assert d.syscall_number(name) == nr
    assert d.syscall_name(nr) == name


@pytest.mark.parametrize("name,hint", [("opnat", "did you mean 'openat'?"), ("zzzzzz", None), (None, None)])
def test_syscall_number_unknown(name, hint):
    with pytest.raises(ValueError) as err:
        d.syscall_number(name)
    msg = str(err.value)
    assert "\n" not in msg and "unknown x86_64 syscall name" in msg
    assert hint is None or hint in msg


KALLSYMS = """\
ffffffff81000000 T _stext
ffffffff81001000 T do_sys_openat2
ffffffff81001800 D some_data
ffffffff81002000 t tcp_v4_rcv
ffffffffc0a00000 t ext4_readdir\t[ext4]
"""


@pytest.fixture
def kallsyms(tmp_path):
    def load(content):
        path = tmp_path / "kallsyms"
        path.write_text(content)
        return d.load_kallsyms(str(path))
    yield load
    d._ksyms = None  # the next user reloads the real /proc/kallsyms


@pytest.mark.parametrize("addr,expected", [
    (0xFFFFFFFF81001010, "do_sys_openat2+0x10"),
    (0xFFFFFFFF81001900, "do_sys_openat2+0x900"),  # data symbols are skipped
    (0xFFFFFFFF81002000, "tcp_v4_rcv+0x0"),
    (0xFFFFFFFFC0A00042, "ext4_readdir+0x42"),
    (0x1000, "0x1000"),
])
def test_ksym(kallsyms, addr, expected):
    assert kallsyms(KALLSYMS) == 4
    assert d.ksym(addr) == expected


def test_ksym_hidden_addresses(kallsyms):
    hidden = "".join("0000000000000000" + line[16:] for line in KALLSYMS.splitlines(True))
    assert kallsyms(hidden) == 0
    assert d.ksym(0xFFFFFFFF81001010) == "0xffffffff81001010"


def test_ksym_unreadable(kallsyms, tmp_path):
    assert d.load_kallsyms(str(tmp_path / "missing")) == 0
    assert d.ksym(0xFFFFFFFF81001010) == "0xffffffff81001010"


def test_disk_name(tmp_path):
    dev = tmp_path / "dev" / "block" / "259:1"
    dev.mkdir(parents=True)
    (dev / "uevent").write_text("MAJOR=259\nMINOR=1\nDEVNAME=nvme0n1p1\nDEVTYPE=partition\n")
    assert d.disk_name(259 << 20 | 1, sysfs=str(tmp_path)) == "nvme0n1p1"
    assert d.disk_name(8 << 20 | 16, sysfs=str(tmp_path)) == "8:16"
    assert d.disk_name(ctypes.c_uint32(259 << 20 | 1), sysfs=str(tmp_path)) == "nvme0n1p1"


def test_set_drop_reasons():
    try:
        d.set_drop_reasons({3: "SKB_DROP_REASON_NO_SOCKET", 5: "SKB_DROP_REASON_PKT_TOO_SMALL"})
        assert d.drop_reason(3) == "no_socket"
        assert d.drop_reason(5) == "pkt_too_small"
        assert d.drop_reason(4) == "reason_4"
        assert d.drop_reason(3, {3: "SKB_DROP_REASON_OTHER"}) == "other"  # explicit table wins
    finally:
        d.set_drop_reasons({})
    assert d.drop_reason(3) == "reason_3"

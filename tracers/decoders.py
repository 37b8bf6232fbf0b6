"""Named decoders: raw BPF map-key and event fields -> label strings.

Every decoder takes one raw value as BCC hands it over (a Python int, bytes,
a ctypes array or a ctypes scalar) and returns a str.  Declarative metric
specs name them through DECODERS, as cloudflare/ebpf_exporter does.

Contract: undecodable input raises DecodeError (a ValueError) and nothing
else, so the exporter can count decoder errors instead of failing a scrape.
Pure stdlib; never imports bcc.
"""
from __future__ import annotations

import bisect
import ctypes
import difflib
import errno
import functools
import platform
import reprlib
import socket
import sys
from typing import Callable

from tracers.runtime import syscall_table


class DecodeError(ValueError):
    """A raw value that a decoder cannot turn into a label."""


DECODERS: dict[str, Callable[..., str]] = {}


def _decoder(fn: Callable[..., str]) -> Callable[..., str]:
    """Register fn by name and hold it to the DecodeError-only contract."""
    @functools.wraps(fn)
    def wrapper(value, *args, **kwargs) -> str:
        try:
            return fn(value, *args, **kwargs)
        except (DecodeError, syscall_table.UnnamedArchitecture):  # the latter: one line, refused
            raise
        except Exception as exc:  # the contract above: callers catch one type
            raise DecodeError(f"{fn.__name__}: cannot decode {reprlib.repr(value)}: {exc}") from exc

    DECODERS[fn.__name__] = wrapper
    return wrapper


def _as_int(value) -> int:
    if isinstance(value, int):
        return int(value)  # also IntEnum, bool
    inner = getattr(value, "value", None)  # ctypes scalars (c_uint, ...)
    if isinstance(inner, int):
        return inner
    raise DecodeError(f"expected an integer, got {type(value).__name__}")


def _as_bytes(value) -> bytes:
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    try:  # ctypes arrays and structures export the buffer protocol; str doesn't
        return memoryview(value).tobytes()
    except TypeError:
        raise DecodeError(f"expected bytes, got {type(value).__name__}") from None


def _is_buffer(value) -> bool:
    """False for int-likes (int, ctypes integer scalars); those read as ints."""
    if isinstance(value, (bytes, bytearray)):
        return True
    return not isinstance(value, int) and not isinstance(getattr(value, "value", None), int)


def _by_table(name: str, table: dict[int, str], unknown: str) -> Callable[..., str]:
    """A decoder that names numbers from a fixed table, "<unknown><n>" otherwise."""
    def decode(value) -> str:
        n = _as_int(value)
        return table.get(n, f"{unknown}{n}")
    decode.__name__ = decode.__qualname__ = name
    decode.__doc__ = f"Number -> name from a fixed table; unknown -> {unknown!r} + number."
    return _decoder(decode)


integer = _by_table("int", {}, "")  # spec.Label's default: the plain number
# A cgroup v2 id (bpf_get_current_cgroup_id()): the number; the exporter's
# --per-container turns such a label into container/pod/namespace.
cgroup = _by_table("cgroup", {}, "")


# --- addresses and ports ----------------------------------------------------

def _inet_bytes(value, size: int) -> bytes:
    if _is_buffer(value):
        raw = _as_bytes(value)
        if len(raw) != size:
            raise DecodeError(f"expected {size} address bytes, got {len(raw)}")
        return raw
    n = _as_int(value)
    if not 0 <= n < 1 << (8 * size):
        raise DecodeError(f"{n} does not fit in {size} bytes")
    # The kernel stores addresses in network order; BCC read the field as a
    # host-order integer, so writing it back in host order gives those bytes.
    return n.to_bytes(size, sys.byteorder)


@_decoder
def inet4(value) -> str:
    """IPv4 from a __be32 field (int as BCC reads it) or 4 bytes."""
    return socket.inet_ntop(socket.AF_INET, _inet_bytes(value, 4))


@_decoder
def inet6(value) -> str:
    """IPv6 from 16 bytes, a ctypes array or a 128-bit int (read like inet4)."""
    return socket.inet_ntop(socket.AF_INET6, _inet_bytes(value, 16))


@_decoder
def inet_addr(value, family=None) -> str:
    """IPv4 or IPv6 by family (2 / 10), else by size.  An int below 2**32 is
    taken as IPv4: pass family for 128-bit fields or "::" reads "0.0.0.0"."""
    if family is not None:
        fam = _as_int(family)
        if fam == socket.AF_INET:
            return inet4(value)
        if fam == socket.AF_INET6:
            return inet6(value)
        raise DecodeError(f"address family {fam} is neither AF_INET nor AF_INET6")
    if _is_buffer(value):
        return inet4(value) if len(_as_bytes(value)) == 4 else inet6(value)
    return inet4(value) if 0 <= _as_int(value) < 1 << 32 else inet6(value)


def _u16(value) -> int:
    if _is_buffer(value):
        raw = _as_bytes(value)
        if len(raw) != 2:
            raise DecodeError(f"expected 2 port bytes, got {len(raw)}")
        return int.from_bytes(raw, sys.byteorder)  # as BCC would have read it
    n = _as_int(value)
    if not 0 <= n <= 0xFFFF:
        raise DecodeError(f"port {n} out of range")
    return n


@_decoder
def port(value) -> str:
    """Port from a __be16 field such as skc_dport (network byte order)."""
    return str(socket.ntohs(_u16(value)))


@_decoder
def port_host(value) -> str:
    """Port already in host order, such as skc_num (the local port)."""
    return str(_u16(value))


# --- numbers with names -----------------------------------------------------

# libc's errno module picks aliases for these; use the kernel's spelling.
_ERRNO_PREFERRED = {35: "EDEADLK", 95: "EOPNOTSUPP"}
# Kernel-internal codes (include/linux/errno.h): seen in kretprobes, not libc.
_KERNEL_ERRNO = dict(enumerate(
    "ERESTARTSYS ERESTARTNOINTR ERESTARTNOHAND ENOIOCTLCMD ERESTART_RESTARTBLOCK "
    "EPROBE_DEFER EOPENSTALE ENOPARAM".split(), start=512))
_KERNEL_ERRNO.update(enumerate(
    "EBADHANDLE ENOTSYNC EBADCOOKIE ENOTSUPP ETOOSMALL ESERVERFAULT EBADTYPE "
    "EJUKEBOX EIOCBQUEUED ERECALLCONFLICT ENOGRACE".split(), start=521))


@_decoder
def errno_name(value) -> str:
    """2 or -2 -> "ENOENT"; unknown -> "E<number>"."""
    n = abs(_as_int(value))
    return _ERRNO_PREFERRED.get(n) or errno.errorcode.get(n) or _KERNEL_ERRNO.get(n) or f"E{n}"


@_decoder
def errno_result(value) -> str:
    """A result slot: 0 -> "ok", else as errno_name (2 or -2 -> "ENOENT")."""
    return "ok" if _as_int(value) == 0 else errno_name(value)


@_decoder
def syscall_name(value) -> str:
    """Number -> name on this architecture (libseccomp's tables); unknown ->
    "syscall_<nr>". An architecture without names raises UnnamedArchitecture."""
    n = _as_int(value)
    return syscall_table.names().get(n, f"syscall_{n}")


def syscall_number(name: str) -> int:
    """Reverse of syscall_name, for tracers that filter by name."""
    numbers = syscall_table.numbers()
    if isinstance(name, str) and name in numbers:
        return numbers[name]
    close = difflib.get_close_matches(str(name), numbers, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise ValueError(f"unknown {platform.machine()} syscall name {name!r}{hint}")


# Linux x86_64 numbering, fixed here so it does not depend on libc's aliases.
_SIGNALS = ("HUP INT QUIT ILL TRAP ABRT BUS FPE KILL USR1 SEGV USR2 PIPE ALRM "
            "TERM STKFLT CHLD CONT STOP TSTP TTIN TTOU URG XCPU XFSZ VTALRM "
            "PROF WINCH IO PWR SYS").split()


@_decoder
def signal_name(value) -> str:
    """9 -> "SIGKILL"; real-time signals as strace spells them."""
    n = _as_int(value)
    if 1 <= n <= len(_SIGNALS):
        return "SIG" + _SIGNALS[n - 1]
    if 32 <= n <= 64:
        # Kernel numbering: glibc's SIGRTMIN (34) is SIGRT_2 here.
        return f"SIGRT_{n - 32}"
    if n == 0:
        return "0"  # kill(pid, 0): the existence probe, as strace prints it
    return f"signal_{n}"


# include/net/tcp_states.h; BOUND_INACTIVE exists since Linux 6.7.
tcp_state = _by_table("tcp_state", dict(enumerate((
    "ESTABLISHED", "SYN_SENT", "SYN_RECV", "FIN_WAIT1", "FIN_WAIT2", "TIME_WAIT",
    "CLOSE", "CLOSE_WAIT", "LAST_ACK", "LISTEN", "CLOSING", "NEW_SYN_RECV",
    "BOUND_INACTIVE"), start=1)), "state_")
ip_proto = _by_table("ip_proto", {1: "icmp", 6: "tcp", 17: "udp", 58: "icmpv6"}, "proto_")
address_family = _by_table("address_family", {2: "IPv4", 10: "IPv6"}, "af_")
_ETHERTYPES = {0x0800: "IPv4", 0x86DD: "IPv6", 0x0806: "ARP", 0x8100: "802.1Q",
               0x88A8: "802.1ad", 0x8847: "MPLS", 0x8848: "MPLS-mcast", 0x88CC: "LLDP"}


@_decoder
def eth_proto(value) -> str:
    """skb->protocol in host order (0x0800 -> "IPv4"); unknown -> "0x88b5"."""
    n = _as_int(value)
    if not 0 <= n <= 0xFFFF:
        raise DecodeError(f"ethertype {n} out of range")
    return _ETHERTYPES.get(n, f"0x{n:04x}")
# tc hooks (tctraffic): which side of the interface, and why a packet was dropped.
tc_direction = _by_table("tc_direction", {0: "ingress", 1: "egress"}, "direction_")
tc_block_reason = _by_table("tc_block_reason", {1: "cidr", 2: "port"}, "reason_")


# --- user-controlled text ---------------------------------------------------

_REPLACEMENT = "\ufffd"
# C0, DEL and C1 controls, line/paragraph separators (they split log lines)
# and bidi overrides (they can make a terminal show text in a false order).
_UNSAFE = [*range(0x20), *range(0x7F, 0xA0), 0x2028, 0x2029,
           *range(0x202A, 0x202F), *range(0x2066, 0x206A)]
_SANITIZE = str.maketrans({c: _REPLACEMENT for c in _UNSAFE})


@_decoder
def text(value, limit: int = 256) -> str:
    """Bytes -> a safe, bounded str, lossy: for text no traced process
    controls (kernel symbols, disk names, rwbs, our own rule names).
    User-space bytes (comm, paths, argv) go through escaped() or comm().

    Cut at the first NUL, decode UTF-8 with U+FFFD for bad bytes, replace
    control characters with U+FFFD, and return at most `limit` characters,
    the last being "…" when the text was cut.
    """
    if limit < 1:
        raise DecodeError(f"limit must be at least 1, got {limit}")
    if isinstance(value, str):
        s = value.split("\0", 1)[0]
    else:
        raw = _as_bytes(value).split(b"\0", 1)[0]
        # Each char takes at most 4 bytes: decoding 4*limit bytes still
        # yields over `limit` chars whenever more input remains.
        s = raw[: 4 * limit + 4].decode("utf-8", "replace")
    if len(s) > limit:
        s = s[: limit - 1] + "…"
    return s.translate(_SANITIZE)


_UNSAFE_SET = frozenset(_UNSAFE)
_PLAIN_ASCII = bytes(c for c in range(0x20, 0x7F) if c != ord("\\"))  # escaped() keeps them as is


def _escape_char(ch: str) -> str:
    code = ord(ch)
    if ch == "\\":
        return "\\\\"
    if 0xDC80 <= code <= 0xDCFF:  # surrogateescape: a byte that is not UTF-8
        return f"\\x{code - 0xDC00:02x}"
    if code in _UNSAFE_SET:
        return "".join(f"\\x{byte:02x}" for byte in ch.encode())
    return ch


@_decoder
def escaped(value) -> str:
    """Bytes from user space (comm, paths, argv) -> text that keeps every
    byte: what --json and the text output of event tracers show.

    Cut at the first NUL. Printable UTF-8 characters stay as they are; every
    other byte is written \\xNN (hex): bytes that are not UTF-8, and each byte
    of a control character (C0, DEL, C1), a line or paragraph separator or a
    bidi override. A backslash is written \\\\. unescape() gives the bytes back,
    so a tab (\\x09) and a real U+FFFD stay apart.
    """
    if isinstance(value, str):
        raise DecodeError("escaped takes the raw bytes, not text")
    raw = _as_bytes(value).split(b"\0", 1)[0]
    if not raw.translate(None, _PLAIN_ASCII):  # the usual case: no Python call per character
        return raw.decode("ascii")
    return "".join(_escape_char(ch) for ch in raw.decode("utf-8", "surrogateescape"))


TASK_COMM_LEN = 16


@_decoder
def comm(value) -> str:
    """Task name, escaped as escaped() does (every byte comes back). The
    kernel's comm holds at most TASK_COMM_LEN - 1 bytes before its NUL;
    longer input (not a kernel comm) keeps that many and ends in "…": the
    label stays bounded and the cut is marked."""
    raw = _as_bytes(value).split(b"\0", 1)[0]
    if len(raw) < TASK_COMM_LEN:
        return escaped(raw)
    return escaped(raw[:TASK_COMM_LEN - 1]) + "…"


def unescape(text: str) -> bytes:
    """The bytes behind escaped(text)."""
    out = bytearray()
    i = 0
    while i < len(text):
        if text.startswith("\\\\", i):
            out += b"\\"
            i += 2
        elif text.startswith("\\x", i) and len(text) >= i + 4:
            out.append(int(text[i + 2:i + 4], 16))
            i += 4
        else:
            out += text[i].encode()
            i += 1
    return bytes(out)


# --- kernel symbols and devices ---------------------------------------------

_ksyms: tuple[list[int], list[str]] | None = None


def load_kallsyms(path: str = "/proc/kallsyms") -> int:
    """(Re)load kernel text symbols; return how many are usable.

    0 means kallsyms is unreadable or shows zero addresses (not root, or
    kptr_restrict): ksym then returns plain hex.  Call again after modules load.
    """
    global _ksyms
    entries = []
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 3 and parts[1] in ("t", "T", "w", "W"):
                    addr = int(parts[0], 16)
                    if addr:
                        entries.append((addr, parts[2]))
    except (OSError, ValueError):
        entries = []
    entries.sort()
    _ksyms = ([a for a, _ in entries], [n for _, n in entries])
    return len(entries)


@_decoder
def ksym(value) -> str:
    """Kernel address -> "func+0xoff"; "0x<addr>" when it cannot be named."""
    addr = _as_int(value)
    if not 0 <= addr < 1 << 64:
        raise DecodeError(f"{addr} is not a 64-bit address")
    if _ksyms is None:
        load_kallsyms()
    addrs, names = _ksyms
    i = bisect.bisect_right(addrs, addr) - 1
    if i < 0:
        return f"0x{addr:x}"
    return f"{names[i]}+0x{addr - addrs[i]:x}"


@_decoder
def disk_name(value, sysfs: str = "/sys") -> str:
    """Block tracepoint dev_t (kernel MKDEV: major << 20 | minor) -> "sda",
    else "MAJ:MIN".  Not cached: numbers are reused after hotplug."""
    dev = _as_int(value)
    if not 0 <= dev < 1 << 32:
        raise DecodeError(f"{dev} is not a 32-bit dev_t")
    major, minor = dev >> 20, dev & ((1 << 20) - 1)
    try:
        with open(f"{sysfs}/dev/block/{major}:{minor}/uevent", encoding="utf-8",
                  errors="replace") as f:
            for line in f:
                if line.startswith("DEVNAME="):
                    return text(line[len("DEVNAME="):].rstrip("\n"))
    except OSError:
        pass
    return f"{major}:{minor}"


# --- drop reasons (values differ per kernel: the table comes from BTF) -------

_DROP_PREFIX = "SKB_DROP_REASON_"
_drop_reasons: dict[int, str] = {}


def _reason_label(name: str) -> str:
    return name.removeprefix(_DROP_PREFIX).lower()


def set_drop_reasons(table: dict[int, str]) -> None:
    """Install {value: "SKB_DROP_REASON_X"} read from BTF enum skb_drop_reason."""
    global _drop_reasons
    _drop_reasons = {int(k): _reason_label(str(v)) for k, v in table.items()}


@_decoder
def drop_reason(value, table: dict[int, str] | None = None) -> str:
    """3 -> "no_socket" (with a table); unknown -> "reason_<n>"."""
    n = _as_int(value)
    if table is not None:
        name = table.get(n)
        return _reason_label(str(name)) if name else f"reason_{n}"
    return _drop_reasons.get(n, f"reason_{n}")


def raw_field(event, name: str) -> bytes:
    """All bytes of a char-array field (ctypes stops reading them at a NUL;
    ring buffer records, tracers.runtime.ringbuf, hold them whole)."""
    if not isinstance(event, ctypes.Structure):
        return getattr(event, name)
    desc = getattr(type(event), name)
    return ctypes.string_at(ctypes.addressof(event) + desc.offset, desc.size)

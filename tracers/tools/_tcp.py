"""Shared by the TCP tracers: options, -D filters and tuple decoding.

The C side is bpf_c/tcpcommon.h (struct tcp_tuple, port slots, filters).
"""
from __future__ import annotations

import argparse
import functools
import os
import socket
import time

from tracers.spec import UsageError
from tracers import decoders
from tracers.summary import Table, label

PORT_SLOTS = 8  # always passed: tcpcommon.h refuses to compile with another number

# struct sock fields the kprobe alternatives read (tracepoints carry them).
SOCK_FIELDS = {
    "OFF_SK_FAMILY": ("sock", "__sk_common.skc_family"),
    "OFF_SK_STATE": ("sock", "__sk_common.skc_state"),
    "OFF_SK_NUM": ("sock", "__sk_common.skc_num"),
    "OFF_SK_DPORT": ("sock", "__sk_common.skc_dport"),
    "OFF_SK_RCV_SADDR": ("sock", "__sk_common.skc_rcv_saddr"),
    "OFF_SK_DADDR": ("sock", "__sk_common.skc_daddr"),
    "OFF_SK_V6_RCV_SADDR": ("sock", "__sk_common.skc_v6_rcv_saddr"),
    "OFF_SK_V6_DADDR": ("sock", "__sk_common.skc_v6_daddr"),
}


@functools.lru_cache(maxsize=None)
def tracepoint_format(category: str, name: str) -> str:
    """A tracepoint's format file, "" when this kernel lacks it. Read before
    the session (mounting tracefs first): what it says becomes -D defines."""
    from tracers.runtime import machine, privileges
    path = machine.TRACEFS / "events" / category / name / "format"
    if not path.exists() and privileges.MOUNT <= privileges.capabilities():
        machine.mount_pseudo_filesystems()
    try:
        return path.read_text()
    except OSError:
        return ""


def port_number(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"a port is 1 to 65535, got {value}")
    return value


def add_filters(parser, local: bool = True, remote: bool = True) -> None:
    """-4/-6 and repeatable --lport/--rport."""
    fam = parser.add_mutually_exclusive_group()
    fam.add_argument("-4", "--ipv4", action="store_true", help="IPv4 only")
    fam.add_argument("-6", "--ipv6", action="store_true", help="IPv6 only")
    if local:
        parser.add_argument("--lport", type=port_number, action="append", metavar="PORT",
                            help=f"only this local port (repeatable, up to {PORT_SLOTS})")
    if remote:
        parser.add_argument("--rport", type=port_number, action="append", metavar="PORT",
                            help=f"only this remote port (repeatable, up to {PORT_SLOTS})")


def port_slots(prefix: str, ports: list[int] | None, tracer: str) -> dict[str, int]:
    """All slots or none: unused slots repeat the first port (C ORs them)."""
    if not ports:
        return {}
    if len(ports) > PORT_SLOTS:
        raise UsageError(f"at most {PORT_SLOTS} --{prefix.lower()} options")
    padded = list(ports) + [ports[0]] * (PORT_SLOTS - len(ports))
    return {f"{prefix}_{i}": p for i, p in enumerate(padded)}


def filter_defines(args, tracer: str) -> dict[str, int]:
    out = {"PORT_SLOTS": PORT_SLOTS}
    if args.ipv4:
        out["FILTER_FAMILY"] = socket.AF_INET
    elif args.ipv6:
        out["FILTER_FAMILY"] = socket.AF_INET6
    out.update(port_slots("LPORT", getattr(args, "lport", None), tracer))
    out.update(port_slots("RPORT", getattr(args, "rport", None), tracer))
    return out


def family_name(family: int) -> str:
    return {socket.AF_INET: "IPv4", socket.AF_INET6: "IPv6"}.get(family, f"af_{family}")


def address(family: int, raw: bytes) -> str:
    """struct tcp_tuple address bytes (IPv4 in the first 4) -> text."""
    if family == socket.AF_INET6:
        return decoders.inet6(bytes(raw[:16]))
    return decoders.inet4(bytes(raw[:4]))


def tuple_record(t) -> dict:
    """A struct tcp_tuple (ctypes) -> the JSON fields every TCP tracer shares."""
    return {
        "family": family_name(t.family),
        "laddr": address(t.family, bytes(t.laddr)),
        "lport": t.lport,
        "raddr": address(t.family, bytes(t.raddr)),
        "rport": t.rport,
    }


def endpoint(addr: str, port: int) -> str:
    return f"[{addr}]:{port}" if ":" in addr else f"{addr}:{port}"


def clock(ts_seconds: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(ts_seconds))


def add_count_flag(parser, what: str) -> None:
    parser.add_argument("-c", "--count", action="store_true",
                        help=f"count {what} in the kernel and print the totals at the end")


def peer_table(name: str, map_name: str, columns: tuple) -> Table:
    """Counts per struct peer_key (family, port, local and remote address),
    printed once at the end. Address columns are labels on the whole key:
    how to read the 16 bytes depends on its family."""
    family = label("family", "", 0, "family", "address_family")  # JSON only
    return Table(name, map_name, (family, *columns), decoders=PEER_ADDRESSES)


PEER_ADDRESSES = {"peer_laddr": lambda key: address(key.family, bytes(key.laddr)),
                  "peer_raddr": lambda key: address(key.family, bytes(key.raddr))}


def listening_owners(proc: str = "/proc") -> dict[tuple[int, int], tuple[int, bytes]]:
    """(family, port) -> (pid, comm) of TCP listeners in this network namespace.

    The kernel side learns owners when listen() runs; this covers listeners
    older than the trace (the first process holding the socket wins)."""
    wanted = {}
    for family, name in ((socket.AF_INET, "tcp"), (socket.AF_INET6, "tcp6")):
        try:
            with open(f"{proc}/net/{name}", encoding="ascii", errors="replace") as f:
                rows = f.read().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            cols = row.split()
            if len(cols) > 9 and cols[3] == "0A":  # TCP_LISTEN
                wanted[cols[9]] = (int(family), int(cols[1].rsplit(":", 1)[1], 16))
    owners: dict[tuple[int, int], tuple[int, bytes]] = {}
    pids = sorted((int(p) for p in os.listdir(proc) if p.isdigit())) if wanted else []
    for pid in pids:
        try:
            links = [os.readlink(f"{proc}/{pid}/fd/{fd}") for fd in os.listdir(f"{proc}/{pid}/fd")]
            with open(f"{proc}/{pid}/comm", "rb") as f:
                comm = f.read().rstrip(b"\n")[:15]
        except OSError:
            continue  # gone, or not ours to read
        for link in links:
            hit = wanted.get(link[8:-1]) if link.startswith("socket:[") else None
            if hit and hit not in owners:
                owners[hit] = (pid, comm)
    return owners


def seed_listeners(session, proc: str = "/proc") -> int:
    """Fill the `listeners` map (family << 16 | port) for listeners older than the trace."""
    try:
        table = session.bpf["listeners"]
    except KeyError:
        return 0  # this hook alternative has no listener map
    seeded = 0
    for (family, port), (pid, comm) in listening_owners(proc).items():
        key = table.Key(family << 16 | port)
        if table.get(key) is not None:
            continue  # listen() seen by the kernel side: fresher
        leaf = table.Leaf()
        leaf.pid, leaf.comm = pid, comm
        table[key] = leaf
        seeded += 1
    return seeded

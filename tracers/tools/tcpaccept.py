"""tcpaccept: passive TCP opens (connections accepted by listeners)."""
from __future__ import annotations

import sys

from tracers import decoders, runner
from tracers.tools import _tcp
from tracers.mapdata import NUMBER
from tracers.spec import Alternative, Hook, Tracer, TracerSpec
from tracers.summary import count, label

SPEC = TracerSpec(
    name="tcpaccept",
    summary="trace TCP passive opens (accepted connections), or count them per service",
    c_file="tcpaccept.bpf.c",
    alternatives=(
        # Handshake completion; pid/comm: the process that called listen()
        # on the listening socket whose wake-up (sk_data_ready, 6.4+) follows.
        Alternative("tracepoint", (
            Hook("tracepoint", "sock:inet_sock_set_state", "on_set_state"),
            Hook("tracepoint", "sock:sk_data_ready", "on_data_ready"),
        ), define="HOOK_TRACEPOINT", needs=("ringbuf",)),
        # accept() returning, in the accepting process (as bcc's tcpaccept):
        # right for SO_REUSEPORT too, where the kernel has no sk_data_ready.
        Alternative("kprobe", (
            Hook("kretprobe", "inet_csk_accept", "on_accept_return"),
        ), define="HOOK_KPROBE",
            btf_fields={"OFF_SK_PROTOCOL": ("sock", "sk_protocol"), **_tcp.SOCK_FIELDS},
            needs=("ringbuf",)),
        # Neither: the owner by port (a SO_REUSEPORT port's last listen()).
        Alternative("tracepoint_by_port", (
            Hook("tracepoint", "sock:inet_sock_set_state", "on_set_state"),
        ), define="HOOK_TRACEPOINT_BY_PORT", needs=("ringbuf",)),
    ),
    events_map="events",
    exporter_defines={"COUNT_ONLY": 1},
    examples=(
        "bpfwatch tcpaccept                   # every accepted connection",
        "bpfwatch tcpaccept -c -d 30          # count per service and client for 30 s",
        "bpfwatch tcpaccept --lport 22 -6     # IPv6 connections to local port 22",
        "bpfwatch tcpaccept --json            # JSON lines",
    ),
)


def to_record(event, boot_offset: float) -> dict:
    return {
        "time": round(event.ts / 1e9 + boot_offset, 6),
        "pid": event.pid,
        "comm": decoders.escaped(decoders.raw_field(event, "comm")),
        "cgroup_id": event.cgroup_id,
        **_tcp.tuple_record(event),
    }


HEADER = (f"{'TIME':<8} {'PID':<7} {'COMM':<16} {'IP':<4} {'RADDR':<26} {'RPORT':>5} "
          f"{'LADDR':<26} {'LPORT':>5}")


def format_line(rec: dict) -> str:
    return (f"{_tcp.clock(rec['time']):<8} {rec['pid']:<7} {rec['comm']:<16} "
            f"{rec['family']:<4} {rec['raddr']:<26} {rec['rport']:>5} {rec['laddr']:<26} "
            f"{rec['lport']:>5}")


COUNTS = _tcp.peer_table("accepts", "accepts", (
    label("laddr", "LADDR", 26, "", "peer_laddr"), label("lport", "LPORT", 5, "port", NUMBER),
    label("raddr", "RADDR", 26, "", "peer_raddr"), count("accepts", "ACCEPTS", 8)))


class TcpAccept(Tracer):
    spec = SPEC

    def add_arguments(self, parser) -> None:
        _tcp.add_filters(parser)
        _tcp.add_count_flag(parser, "accepts per service (local address and port) and client address")

    def defines(self, args) -> dict[str, int]:
        out = _tcp.filter_defines(args, "tcpaccept")
        if args.count:
            out["COUNT_ONLY"] = 1
        return out

    def run(self, session, args) -> int:
        _tcp.seed_listeners(session)  # owners of listeners older than the trace
        settle = pending_flusher(session)
        if not args.count:
            return runner.stream_events(session, args, "TCP accepts", HEADER, to_record, format_line,
                                        settle=settle)
        return runner.summary_loop(session, args, "TCP accepts (counting)", (COUNTS,), settle=settle)


def pending_flusher(session):
    """With sk_data_ready, an accept waits per CPU for its listener's wake-up
    (none comes after a Fast Open child is established): before reading,
    report what waits, by port, on every CPU."""
    if "on_data_ready" not in {h.fn for h in session.alternative.hooks}:
        return lambda: None  # nothing waits: every accept is reported at once
    from bcc import BPF
    from bcc.utils import get_online_cpus

    from tracers.runtime import bpfsys
    fd = session.bpf.load_func(b"on_flush_pending", BPF.RAW_TRACEPOINT).fd
    cpus = get_online_cpus()  # a test run on an offline CPU is refused

    def flush():
        for cpu in cpus:
            bpfsys.run_on_cpu(fd, cpu)
    try:
        flush()  # nothing waits yet: only whether the kernel runs it (5.10+)
    except OSError as exc:
        print(f"bpfwatch tcpaccept: cannot flush waiting accepts at exit ({exc.strerror}): "
              "a Fast Open accept may be reported late or not at all", file=sys.stderr)
        return lambda: None
    return flush


TRACER = TcpAccept

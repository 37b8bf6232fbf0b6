"""tcplife: one record per TCP connection when it closes, with exact bytes."""
from __future__ import annotations

from tracers import decoders, runner
from tracers.tools import _tcp
from tracers.spec import Alternative, Hook, Label, Metric, Tracer, TracerSpec

# Exact byte counters, read at offsets from the running kernel's BTF.
TCP_SOCK_FIELDS = {"OFF_TCP_SOCK_BYTES_ACKED": ("tcp_sock", "bytes_acked"),
                   "OFF_TCP_SOCK_BYTES_RECEIVED": ("tcp_sock", "bytes_received"),
                   "OFF_TCP_SOCK_SND_UNA": ("tcp_sock", "snd_una"),
                   "OFF_TCP_SOCK_WRITE_SEQ": ("tcp_sock", "write_seq"),
                   "OFF_SK_FLAGS": ("sock", "__sk_common.skc_flags")}
FAMILY = Label("family", "family", "address_family")

SPEC = TracerSpec(
    name="tcplife",
    summary="trace TCP connections as they close: owner, addresses, exact bytes, duration",
    c_file="tcplife.bpf.c",
    alternatives=(
        Alternative("tracepoint", (
            Hook("tracepoint", "sock:inet_sock_set_state", "on_set_state"),
        ), define="HOOK_TRACEPOINT", btf_fields=TCP_SOCK_FIELDS, needs=("ringbuf",)),
        Alternative("kprobe", (
            Hook("kprobe", "tcp_set_state", "on_set_state"),
        ), define="HOOK_KPROBE", btf_fields={**TCP_SOCK_FIELDS, **_tcp.SOCK_FIELDS},
            needs=("ringbuf",)),
    ),
    metrics=(
        Metric("tcp_connections_closed_total", "TCP connections closed, by address family.",
               map="life_totals", labels=(FAMILY,), value_field="connections"),
        Metric("tcp_connection_sent_bytes_total",
               "Bytes sent and acknowledged by closed TCP connections.",
               map="life_totals", labels=(FAMILY,), value_field="bytes_sent"),
        Metric("tcp_connection_received_bytes_total", "Bytes received by closed TCP connections.",
               map="life_totals", labels=(FAMILY,), value_field="bytes_received"),
        Metric("tcp_connection_duration_seconds", "Lifetime of closed TCP connections.",
               map="life_hist", kind="histogram", labels=(FAMILY,), buckets="exp2",
               multiplier=1e-6, sum_map="life_us_sum"),
    ),
    events_map="events",
    exporter_defines={"COUNT_ONLY": 1},
    examples=(
        "bpfwatch tcplife                      # every connection as it closes",
        "bpfwatch tcplife --json -d 10         # JSON lines for 10 seconds",
        "bpfwatch tcplife --lport 80 --lport 443   # served on local port 80 or 443",
        "bpfwatch tcplife -4 --rport 5432      # IPv4 connections to remote port 5432",
        "bpfwatch tcplife -p 1234 --us         # owned by process 1234, duration in us",
    ),
)


def to_record(event, boot_offset: float) -> dict:
    return {
        "time": round(event.ts / 1e9 + boot_offset, 6),
        "pid": event.pid,
        "comm": decoders.escaped(decoders.raw_field(event, "comm")),
        "cgroup_id": event.cgroup_id,
        **_tcp.tuple_record(event),
        "bytes_sent": event.bytes_sent,
        "bytes_received": event.bytes_received,
        "duration_us": event.duration_ns // 1000,
    }


HEADER = (f"{'TIME':<8} {'PID':<7} {'COMM':<16} {'LADDR':<26} {'LPORT':>5} {'RADDR':<26} "
          f"{'RPORT':>5} {'TX_BYTES':>10} {'RX_BYTES':>10} ")


def format_line(rec: dict, micro: bool = False) -> str:
    dur = f"{rec['duration_us']:>10}" if micro else f"{rec['duration_us'] / 1000:>10.2f}"
    return (f"{_tcp.clock(rec['time']):<8} {rec['pid']:<7} {rec['comm']:<16} "
            f"{rec['laddr']:<26} {rec['lport']:>5} {rec['raddr']:<26} {rec['rport']:>5} "
            f"{rec['bytes_sent']:>10} {rec['bytes_received']:>10} {dur}")


class TcpLife(Tracer):
    spec = SPEC

    def add_arguments(self, parser) -> None:
        _tcp.add_filters(parser)
        parser.add_argument("--us", action="store_true", help="durations in microseconds, not ms")

    def defines(self, args) -> dict[str, int]:
        return _tcp.filter_defines(args, "tcplife")

    def run(self, session, args) -> int:
        _tcp.seed_listeners(session)  # owners of listeners older than the trace
        return runner.stream_events(session, args, "TCP connection lifetimes",
                                HEADER + ("US" if args.us else "MS").rjust(10), to_record,
                                lambda rec: format_line(rec, args.us))


TRACER = TcpLife

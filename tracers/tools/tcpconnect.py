"""tcpconnect: active TCP opens (connect()), with result and latency."""
from __future__ import annotations

from tracers import decoders, runner
from tracers.tools import _tcp
from tracers.mapdata import NUMBER
from tracers.spec import Alternative, Hook, Tracer, TracerSpec
from tracers.summary import count, label

SPEC = TracerSpec(
    name="tcpconnect",
    summary="trace TCP active opens (connect()) with result and latency, or count them",
    c_file="tcpconnect.bpf.c",
    alternatives=(
        Alternative("tracepoint", (
            Hook("tracepoint", "sock:inet_sock_set_state", "on_set_state"),
        ), define="HOOK_TRACEPOINT", btf_fields={"OFF_SK_ERR": ("sock", "sk_err")},
            needs=("ringbuf",)),
        Alternative("kprobe", (
            Hook("kprobe", "tcp_set_state", "on_set_state"),
        ), define="HOOK_KPROBE",
            btf_fields={"OFF_SK_ERR": ("sock", "sk_err"), **_tcp.SOCK_FIELDS},
            needs=("ringbuf",)),
    ),
    events_map="events",
    exporter_defines={"COUNT_ONLY": 1},
    examples=(
        "bpfwatch tcpconnect                  # every connect() as it resolves",
        "bpfwatch tcpconnect -c --duration 30 # count per destination for 30 s",
        "bpfwatch tcpconnect --rport 443 -4   # IPv4 connects to port 443",
        "bpfwatch tcpconnect -p 1234 --json   # by process 1234, as JSON lines",
    ),
)


def result(event) -> str:
    if event.established:
        return "established"
    return decoders.errno_name(event.err) if event.err else "closed"


def to_record(event, boot_offset: float) -> dict:
    return {
        "time": round(event.ts / 1e9 + boot_offset, 6),
        "pid": event.pid,
        "comm": decoders.escaped(decoders.raw_field(event, "comm")),
        "cgroup_id": event.cgroup_id,
        **_tcp.tuple_record(event),
        "latency_us": event.latency_ns // 1000,
        "result": result(event),
    }


HEADER = (f"{'TIME':<8} {'PID':<7} {'COMM':<16} {'IP':<4} {'SADDR':<26} {'SPORT':>5} "
          f"{'DADDR':<26} {'DPORT':>5} {'LAT(ms)':>8} RESULT")


def format_line(rec: dict) -> str:
    return (f"{_tcp.clock(rec['time']):<8} {rec['pid']:<7} {rec['comm']:<16} "
            f"{rec['family']:<4} {rec['laddr']:<26} {rec['lport']:>5} {rec['raddr']:<26} "
            f"{rec['rport']:>5} {rec['latency_us'] / 1000:>8.3f} {rec['result']}")


COUNTS = _tcp.peer_table("connects", "dests", (
    label("saddr", "SADDR", 26, "", "peer_laddr"), label("daddr", "DADDR", 26, "", "peer_raddr"),
    label("dport", "DPORT", 5, "port", NUMBER), count("connects", "CONNECTS", 9, "connects"),
    count("failed", "FAILED", 7, "failed")))


class TcpConnect(Tracer):
    spec = SPEC
    duration_letter = False  # bcc's -d: the DNS query behind each connect

    def add_arguments(self, parser) -> None:
        _tcp.add_filters(parser)
        _tcp.add_count_flag(parser, "connects per destination (source address, destination, port)")

    def defines(self, args) -> dict[str, int]:
        out = _tcp.filter_defines(args, "tcpconnect")
        if args.count:
            out["COUNT_ONLY"] = 1
        return out

    def run(self, session, args) -> int:
        if not args.count:
            return runner.stream_events(session, args, "TCP connects", HEADER, to_record, format_line)
        return runner.summary_loop(session, args, "TCP connects (counting)", (COUNTS,))


TRACER = TcpConnect

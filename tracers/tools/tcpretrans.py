"""tcpretrans: TCP retransmissions with addresses, ports and state.

A retransmit is an attempt that sent the segment: the kernel's RetransSegs
minus TCPRetransFail (RetransSegs grows before the transmit). Attempts that
sent nothing are reported apart as failed attempts: the qdisc refused the
segment, or (not in either counter) the original was still queued in this
host, no route, no memory. Newer kernels (6.18 here) fire tcp:tcp_retransmit_skb
for every attempt, with its `err`; older ones (6.1) only for sent ones, and failed
attempts are then seen by the kprobe alternative alone (tcp_retransmit_skb
and __tcp_retransmit_skb, which tail loss probes call directly).
"""
from __future__ import annotations

import re
import sys

from tracers import decoders, runner
from tracers.runtime.maps import as_int
from tracers.tools import _tcp
from tracers.spec import Alternative, Hook, Label, Metric, Tracer, TracerSpec

SPEC = TracerSpec(
    name="tcpretrans",
    summary="trace TCP retransmissions (addresses, ports, state), or count them per flow",
    c_file="tcpretrans.bpf.c",
    alternatives=(
        Alternative("tracepoint", (
            Hook("tracepoint", "tcp:tcp_retransmit_skb", "on_retransmit"),
        ), define="HOOK_TRACEPOINT", needs=("ringbuf",)),
        Alternative("kprobe", (
            Hook("kprobe", "tcp_retransmit_skb", "on_retransmit"),
            Hook("kretprobe", "tcp_retransmit_skb", "on_retransmit_return"),
            # tail loss probes call it directly (tcp_retransmit_skb may inline it)
            Hook("kprobe", "__tcp_retransmit_skb", "on_retransmit_inner", optional=True),
            Hook("kretprobe", "__tcp_retransmit_skb", "on_retransmit_return", optional=True),
        ), define="HOOK_KPROBE", btf_fields=_tcp.SOCK_FIELDS, needs=("ringbuf",)),
    ),
    metrics=(
        Metric("tcp_retransmits_total", "TCP segments retransmitted, by family and TCP state.",
               map="retrans_by_state", labels=(Label("family", "family", "address_family"),
                                               Label("state", "state", "tcp_state"))),
        Metric("tcp_retransmit_failures_total", "TCP retransmit attempts that sent nothing, by "
               "family and TCP state.", map="failed_by_state",
               labels=(Label("family", "family", "address_family"), Label("state", "state", "tcp_state"))),
    ),
    events_map="events",
    exporter_defines={"COUNT_ONLY": 1},
    exporter_default=True,  # one counter per (family, state): cheap and bounded
    examples=(
        "bpfwatch tcpretrans                  # every retransmission",
        "bpfwatch tcpretrans -c -d 60         # count per flow for a minute",
        "bpfwatch tcpretrans --rport 443      # only connections to port 443",
        "bpfwatch tcpretrans -6 --json        # IPv6 only, JSON lines",
    ),
)


def retransmit_err_field() -> int:
    """1 when tcp:tcp_retransmit_skb has an `err` field (it then fires for
    failed attempts too), else 0 (C: TP_RETRANSMIT_ERR)."""
    return int(re.search(r"\bint err;", _tcp.tracepoint_format("tcp", "tcp_retransmit_skb")) is not None)


def failures_seen(session) -> bool:
    """Whether this run sees failed attempts (old tracepoints fire only for sent ones)."""
    return session.alternative.name != "tracepoint" or bool(session.defines.get("TP_RETRANSMIT_ERR"))


def failed_attempts(session) -> int | None:
    """Attempts that sent nothing, or None when this run cannot see them."""
    if not failures_seen(session):
        return None
    return sum(as_int(v) for _k, v in session.read_map("failed_by_state"))


def to_record(event, boot_offset: float) -> dict:
    return {
        "time": round(event.ts / 1e9 + boot_offset, 6),
        **_tcp.tuple_record(event),
        "state": decoders.tcp_state(event.state),
    }


HEADER = f"{'TIME':<8} {'IP':<4} {'LADDR:LPORT':<32}    {'RADDR:RPORT':<32} STATE"


def format_line(rec: dict) -> str:
    return (f"{_tcp.clock(rec['time']):<8} {rec['family']:<4} "
            f"{_tcp.endpoint(rec['laddr'], rec['lport']):<32} R> "
            f"{_tcp.endpoint(rec['raddr'], rec['rport']):<32} {rec['state']}")


def read_flows(session) -> list[dict]:
    seen = failures_seen(session)  # else None: unknown, not zero
    rows = [dict(_tcp.tuple_record(key), retransmits=value.retransmits,
                 failed=value.failed if seen else None)
            for key, value in session.bpf["flows"].items()]
    return sorted(rows, key=lambda r: (-r["retransmits"], r["raddr"], r["rport"]))


def print_flows(session, args) -> None:
    rows = read_flows(session)
    if args.json:
        runner.emit({"flows": rows, "map_update_failures": session.stats()["map_update_failures"]})
        return
    print(f"{'LADDR:LPORT':<32}    {'RADDR:RPORT':<32} {'RETRANSMITS':>11} {'FAILED':>7}")
    for r in rows:
        failed = "?" if r["failed"] is None else r["failed"]
        print(f"{_tcp.endpoint(r['laddr'], r['lport']):<32} <> "
              f"{_tcp.endpoint(r['raddr'], r['rport']):<32} {r['retransmits']:>11} {failed:>7}")


class TcpRetrans(Tracer):
    spec = SPEC
    process_filters = False  # retransmissions run from timers and softirqs

    def add_arguments(self, parser) -> None:
        _tcp.add_filters(parser)
        _tcp.add_count_flag(parser, "retransmissions per flow")

    def defines(self, args) -> dict[str, int]:
        out = _tcp.filter_defines(args, "tcpretrans")
        out["TP_RETRANSMIT_ERR"] = retransmit_err_field()
        if args.count:
            out.update(COUNT_FLOWS=1, COUNT_ONLY=1)
        return out

    def run(self, session, args) -> int:
        if not args.count:
            try:
                return runner.stream_events(
                    session, args, "TCP retransmissions", HEADER, to_record, format_line,
                    summary=lambda: {"failed_attempts": failed_attempts(session)})
            finally:
                failed = failed_attempts(session)
                if failed and not args.json:
                    print(f"bpfwatch tcpretrans: {failed} retransmit attempts sent nothing "
                          "(qdisc refused, still queued, no route): not listed", file=sys.stderr)
        runner.announce(session, "TCP retransmissions (counting)")
        runner.wait_for_end(args)
        print_flows(session, args)
        return 0


TRACER = TcpRetrans

"""skbdrop: packets the kernel drops, counted per reason, protocol and location."""
from __future__ import annotations

import os
import time

from tracers import decoders, options, runner
from tracers.runtime import btf
from tracers.spec import Alternative, Hook, Label, Metric, Tracer, TracerSpec, UsageError

NETNS_FIELDS = {"OFF_SKB_DEV": ("sk_buff", "dev"),
                "OFF_DEV_NET": ("net_device", "nd_net.net"),
                "OFF_NET_INUM": ("net", "ns.inum")}

SPEC = TracerSpec(
    name="skbdrop",
    summary="count packets the kernel drops, per drop reason and protocol (and kernel location)",
    c_file="skbdrop.bpf.c",
    alternatives=(
        # The reason argument exists since Linux 5.17; older kernels have no
        # reasons to count, so there is no kprobe alternative.
        Alternative("tracepoint", (
            Hook("tracepoint", "skb:kfree_skb", "on_kfree_skb"),
        ), btf_fields=NETNS_FIELDS),
    ),
    metrics=(
        Metric("skb_drops_total", "Packets dropped by the kernel, by drop reason and protocol.",
               map="drops", labels=(Label("reason", "reason", "drop_reason"),
                                    Label("protocol", "protocol", "eth_proto"))),
    ),
    exporter_default=True,  # at most (reasons x protocols) series
    examples=(
        "bpfwatch skbdrop                       # count until Ctrl-C, then print",
        "bpfwatch skbdrop 1 10                  # every second, ten times",
        "bpfwatch skbdrop --location -d 5       # with the dropping kernel function",
        "bpfwatch skbdrop --netns myns --json 2 # one network namespace, JSON every 2 s",
    ),
)



def netns_inode(text: str) -> int:
    path = text if "/" in text else os.path.join("/run/netns", text)
    try:
        return os.stat(path).st_ino
    except OSError as exc:
        raise UsageError(f"--netns {text!r}: {exc.strerror}") from None


def load_reason_names() -> None:
    """Reason numbers differ between kernels: name them from this kernel's BTF."""
    try:
        decoders.set_drop_reasons(btf.BTF.load().enum_values("skb_drop_reason"))
    except (btf.BTFUnavailable, LookupError):
        pass  # numbers are shown as reason_<n>



def read_totals(session, by_location: bool) -> dict[tuple, int]:
    """Cumulative counts: (reason, protocol[, location]) -> packets."""
    table = session.bpf["drops_at" if by_location else "drops"]
    totals = {}
    for key, value in table.items():
        k = (key.reason, key.protocol, key.location) if by_location else (key.reason, key.protocol)
        totals[k] = value.value
    return totals


def deltas(now: dict, before: dict) -> list[tuple]:
    rows = [(k, n - before.get(k, 0)) for k, n in now.items() if n > before.get(k, 0)]
    return sorted(rows, key=lambda r: (-r[1], r[0]))


def to_row(key: tuple, count: int) -> dict:
    row = {"reason": decoders.drop_reason(key[0]), "protocol": decoders.eth_proto(key[1])}
    if len(key) > 2:
        row["location"] = decoders.ksym(key[2])
    row["count"] = count
    return row


def format_rows(rows: list[dict], by_location: bool) -> list[str]:
    where = f" {'LOCATION':<40}" if by_location else ""
    lines = [f"{'REASON':<28} {'PROTOCOL':<9}{where} {'COUNT':>10}"]
    for r in rows:
        where = f" {r['location']:<40}" if by_location else ""
        lines.append(f"{r['reason']:<28} {r['protocol']:<9}{where} {r['count']:>10}")
    return lines


class Skbdrop(Tracer):
    spec = SPEC
    interval = True

    def add_arguments(self, parser) -> None:
        parser.add_argument("--location", action="store_true",
                            help="also count per kernel location (symbolised)")
        parser.add_argument("--netns", metavar="NAME|PATH",
                            help="only packets on devices of this network namespace "
                                 "(a name in /run/netns, or a path like /proc/PID/ns/net)")
        parser.add_argument("-T", "--top", type=options.positive_int, default=20,
                            help="rows shown (default 20)")

    def defines(self, args) -> dict[str, int]:
        if args.pid or args.comm:
            raise UsageError("-p/--comm don't apply: most drops happen in "
                             "softirq context, not in a process; use --netns")
        load_reason_names()  # here: the CLI and the exporter both call defines()
        out = {}
        if args.location:
            out["BY_LOCATION"] = 1
        if args.netns:
            out["FILTER_NETNS"] = netns_inode(args.netns)
        return out

    def run(self, session, args) -> int:
        if args.location:
            decoders.load_kallsyms()
        before: dict = {}
        started = time.time()
        runner.announce(session, "packet drops")

        def tick(final: bool) -> None:
            nonlocal before, started
            now = read_totals(session, args.location)
            rows = [to_row(k, n) for k, n in deltas(now, before)[:args.top]]
            before, began, started = now, started, time.time()
            if args.json:
                runner.emit({"time": round(started, 3), "interval_s": round(started - began, 3),
                             "drops": rows,
                             "map_update_failures": session.stats()["map_update_failures"]})
                return
            print(f"[{time.strftime('%H:%M:%S')}]")
            print("\n".join(format_rows(rows, args.location)) + "\n", flush=True)

        runner.interval_loop(args, tick)
        return 0


TRACER = Skbdrop

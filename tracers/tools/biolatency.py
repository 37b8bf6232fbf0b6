"""biolatency: block I/O latency as a log2 histogram, per disk or flags."""
from __future__ import annotations

import sys
import time

from tracers import decoders, runner
from tracers.tools import _block
from tracers.output import text as fmt
from tracers.spec import Label, Metric, Tracer, TracerSpec

SPEC = TracerSpec(
    name="biolatency",
    summary="block device I/O latency as a log2 histogram (issue to completion)",
    c_file=_block.C_FILE,
    alternatives=_block.alternatives(),
    metrics=(
        Metric("block_io_latency_seconds", "Block I/O latency, issue to completion, by disk.",
               map="dist", kind="histogram", labels=(Label("disk", "dev", "disk_name"),),
               buckets="exp2", multiplier=1e-6, sum_map="dist_sum"),
    ),
    # One series per disk, 65 slots at most: bounded and cheap.
    exporter_defines={"PER_DISK": 1},
    exporter_skip=("on_insert",),  # queue time (-Q) is a CLI option
    exporter_default=True,
    examples=(
        "bpfwatch biolatency                  # histogram until Ctrl-C",
        "bpfwatch biolatency -D 1 10          # per disk, every second, ten times",
        "bpfwatch biolatency -m -Q            # milliseconds, queue time included",
        "bpfwatch biolatency -F --disk sda    # per operation flags (rwbs), one disk",
        "bpfwatch biolatency --json -D -d 5   # JSON after 5 seconds",
    ),
)






def read_counts(session) -> dict:
    """(dev, rwbs) -> {slot: count}, cumulative (the map is never cleared)."""
    out: dict = {}
    for key, value in session.bpf["dist"].items():
        group = (key.dev, decoders.text(decoders.raw_field(key, "rwbs"), limit=8))
        out.setdefault(group, {})[key.slot] = value.value
    return out


def deltas(now: dict, before: dict) -> dict:
    out = {}
    for group, slots in now.items():
        old = before.get(group, {})
        diff = {s: c - old.get(s, 0) for s, c in slots.items() if c > old.get(s, 0)}
        if diff:
            out[group] = diff
    return out


def group_label(args, group) -> dict:
    dev, rwbs = group
    label = {}
    if args.disks:
        label["disk"] = decoders.disk_name(dev)
    if args.flags:
        label["flags"] = rwbs
    return label


def to_records(args, groups: dict) -> list[dict]:
    records = []
    for group in sorted(groups, key=lambda g: (group_label(args, g).get("disk", ""), g[1])):
        slots = groups[group]
        buckets = [{"low": lo, "high": hi, "count": slots[s]}
                   for s in sorted(slots) for lo, hi in [fmt.log2_bucket_bounds(s)]]
        records.append(dict(group_label(args, group), buckets=buckets,
                            total=sum(slots.values())))
    return records


def format_text(args, records: list[dict], unit: str) -> str:
    parts = []
    for rec in records:
        head = ", ".join(f"{k} = {rec[k]}" for k in ("disk", "flags") if k in rec)
        hist = fmt.log2_histogram({b["high"].bit_length(): b["count"] for b in rec["buckets"]}, unit)
        parts.append((f"\n{head}\n" if head else "\n") + hist)
    return "\n".join(parts)


class Biolatency(Tracer):
    spec = SPEC
    interval = True

    def add_arguments(self, parser) -> None:
        _block.add_arguments(parser)
        parser.add_argument("-m", "--milliseconds", action="store_true", help="histogram in ms (default µs)")
        parser.add_argument("-D", "--disks", action="store_true", help="one histogram per disk")
        parser.add_argument("-F", "--flags", action="store_true",
                            help="one histogram per operation flags (rwbs: R read, W write, S sync, F flush...)")

    def defines(self, args) -> dict[str, int]:
        out = _block.defines(args, "bpfwatch biolatency")
        for flag, name in ((args.milliseconds, "MILLISECONDS"), (args.disks, "PER_DISK"),
                           (args.flags, "PER_FLAGS")):
            if flag:
                out[name] = 1
        return out

    def skip_hooks(self, args) -> set[str]:
        return _block.skip_hooks(args, needs_issuer=False)

    def run(self, session, args) -> int:
        unit = "msecs" if args.milliseconds else "usecs"
        before: dict = {}
        started = time.time()
        runner.announce(session, "block device I/O")

        def tick(final: bool) -> None:
            nonlocal before, started
            now = read_counts(session)
            records = to_records(args, deltas(now, before))
            before, began, started = now, started, time.time()
            lost = _block.drop_warning(session, "bpfwatch biolatency")
            if lost and final:
                print(lost, file=sys.stderr)
            if args.json:
                runner.emit({"time": round(started, 3), "interval_s": round(started - began, 3),
                             "unit": unit, "histograms": records,
                             "map_update_failures": session.stats()["map_update_failures"]})
                return
            if args.interval:
                print(f"\n[{time.strftime('%H:%M:%S')}]")
            print(format_text(args, records, unit), flush=True)

        runner.interval_loop(args, tick)
        return 0


TRACER = Biolatency

"""biolatency: block I/O latency as a log2 histogram, per disk or flags."""
from __future__ import annotations

import sys

from tracers import containers, runner
from tracers.tools import _block
from tracers.spec import Label, Metric, Tracer, TracerSpec
from tracers.summary import Histogram, label

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
    exporter_default=True,
    examples=(
        "bpfwatch biolatency                         # histogram until Ctrl-C",
        "bpfwatch biolatency -D 1 10                 # per disk, every second, ten times",
        "bpfwatch biolatency -m -Q                   # milliseconds, queue time included",
        "bpfwatch biolatency -F --disk sda           # per operation flags (rwbs), one disk",
        "bpfwatch biolatency --json -D --duration 5  # JSON after 5 seconds",
        "bpfwatch biolatency --per-container         # by the container that issued the I/O",
    ),
)


def histogram(args) -> Histogram:
    """One histogram, or one per disk and/or operation flags (rwbs)."""
    by = []
    if args.disks:
        by.append(label("disk", "disk", 0, "dev", "disk_name"))
    if args.flags:
        by.append(label("flags", "flags", 0, "rwbs", "text"))
    if args.per_container:
        by.append(label("container", "container", 0, "cgroup_id", "container"))
    return Histogram("dist", "msecs" if args.milliseconds else "usecs", by=tuple(by),
                     slot_field="slot", empty="(no block I/O seen)",
                     decoders=containers.short_id_decoders())


class Biolatency(Tracer):
    spec = SPEC
    interval = True
    duration_letter = False  # -d is --disk, as in bcc

    def add_arguments(self, parser) -> None:
        _block.add_arguments(parser)
        parser.add_argument("-m", "--milliseconds", action="store_true", help="histogram in ms (default µs)")
        parser.add_argument("-D", "--disks", action="store_true", help="one histogram per disk")
        parser.add_argument("-F", "--flags", action="store_true",
                            help="one histogram per operation flags (rwbs: R read, W write, S sync, F flush...)")
        parser.add_argument("--per-container", action="store_true",
                            help="one histogram per container of the issuing task (host tasks: '-')")

    def defines(self, args) -> dict[str, int]:
        out = _block.defines(args, "bpfwatch biolatency")
        for flag, name in ((args.milliseconds, "MILLISECONDS"), (args.disks, "PER_DISK"),
                           (args.flags, "PER_FLAGS"), (args.per_container, "PER_CGROUP")):
            if flag:
                out[name] = 1
        return out

    def skip_hooks(self, args) -> set[str]:
        return _block.skip_hooks(args, needs_issuer=args.per_container)

    def run(self, session, args) -> int:
        try:
            hist = histogram(args)
            return runner.summary_loop(session, args, "block device I/O", (hist,),
                                       extra=lambda rows: {"unit": hist.unit})
        finally:
            lost = _block.drop_warning(session, "bpfwatch biolatency")
            if lost:
                print(lost, file=sys.stderr)


TRACER = Biolatency

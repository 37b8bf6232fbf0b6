"""cpudist: how long tasks run on a CPU per stint (or, with -O, stay off it)."""
from __future__ import annotations

from tracers import runner
from tracers.tools import _hist
from tracers.tools._sched import SCHED_SWITCH_ALTERNATIVES
from tracers.spec import Metric, Tracer, TracerSpec

SPEC = TracerSpec(
    name="cpudist",
    summary="on-CPU (or -O off-CPU) time per scheduling stint as a log2 histogram",
    c_file="cpudist.bpf.c",
    alternatives=SCHED_SWITCH_ALTERNATIVES,
    metrics=(
        Metric("cpu_oncpu_seconds", "Time tasks ran on a CPU per scheduling stint.",
               map="dist", kind="histogram", buckets="exp2", multiplier=1e-6, sum_map="dist_sum"),
    ),
    examples=(
        "bpfwatch cpudist                 # on-CPU stints in usecs, at Ctrl-C",
        "bpfwatch cpudist -O -m 1 5       # off-CPU stints in msecs, every second, 5 times",
        "bpfwatch cpudist -P -p 1234      # per process, only process 1234",
        "bpfwatch cpudist --json -d 5     # JSON after 5 seconds",
    ),
)


class Cpudist(Tracer):
    spec = SPEC
    interval = True

    def add_arguments(self, parser) -> None:
        parser.add_argument("-O", "--offcpu", action="store_true", help="off-CPU time instead of on-CPU")
        _hist.add_arguments(parser, threads=False)

    def defines(self, args) -> dict[str, int]:
        return {**_hist.defines(args), **({"OFFCPU": 1} if args.offcpu else {})}

    def run(self, session, args) -> int:
        what = "off-CPU time" if args.offcpu else "on-CPU time"
        return runner.summary_loop(session, args, what, (_hist.latency_histogram(args, f"(no {what} seen)"),))


TRACER = Cpudist

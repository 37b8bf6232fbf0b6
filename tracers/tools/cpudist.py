"""cpudist: how long tasks run on a CPU per stint (or, with -O, stay off it)."""
from __future__ import annotations


from tracers import runner
from tracers.tools._hist import latency_histogram
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
        parser.add_argument("-m", "--milliseconds", action="store_true", help="histogram in msecs")
        per = parser.add_mutually_exclusive_group()
        per.add_argument("-P", "--pids", action="store_true", help="one histogram per process (TGID)")
        per.add_argument("--per-container", action="store_true",
                         help="one histogram per container (host tasks: one '-' histogram)")

    def defines(self, args) -> dict[str, int]:
        out = {"UNIT_NS": 1_000_000 if args.milliseconds else 1000}
        if args.offcpu:
            out["OFFCPU"] = 1
        if args.pids:
            out["PER_PROCESS"] = 1
        if args.per_container:
            out["PER_CGROUP"] = 1
        return out

    def run(self, session, args) -> int:
        what = "off-CPU time" if args.offcpu else "on-CPU time"
        return runner.summary_loop(session, args, what, (latency_histogram(args, f"(no {what} seen)"),))


TRACER = Cpudist

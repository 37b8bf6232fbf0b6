"""runqlat: run-queue latency, how long runnable tasks wait for a CPU."""
from __future__ import annotations

from tracers import runner
from tracers.tools import _hist
from tracers.spec import Alternative, Hook, Metric, Tracer, TracerSpec

RAW_TASK_FIELDS = {"OFF_TASK_PID": ("task_struct", "pid"),
                   "OFF_TASK_STATE": ("task_struct", "__state")}

SPEC = TracerSpec(
    name="runqlat",
    summary="run-queue (scheduler) latency as a log2 histogram, optionally per process",
    c_file="runqlat.bpf.c",
    alternatives=(
        # Tracepoint arguments carry pids and prev_state: no kernel struct reads.
        Alternative("tracepoint", (
            Hook("tracepoint", "sched:sched_wakeup", "on_sched_wakeup"),
            Hook("tracepoint", "sched:sched_wakeup_new", "on_sched_wakeup_new"),
            Hook("tracepoint", "sched:sched_switch", "on_sched_switch"),
        ), define="HOOK_TRACEPOINT"),
        # Raw tracepoints pass task_struct pointers: pid and state via BTF.
        Alternative("raw_tracepoint", (
            Hook("raw_tracepoint", "sched_wakeup", "on_sched_wakeup"),
            Hook("raw_tracepoint", "sched_wakeup_new", "on_sched_wakeup"),
            Hook("raw_tracepoint", "sched_switch", "on_sched_switch"),
        ), define="HOOK_RAW_TRACEPOINT", btf_fields=RAW_TASK_FIELDS),
    ),
    metrics=(
        Metric("runq_latency_seconds", "Time runnable tasks waited on a run queue.",
               map="dist", kind="histogram", buckets="exp2", multiplier=1e-6, sum_map="dist_sum"),
    ),
    examples=(
        "bpfwatch runqlat                  # histogram in usecs at Ctrl-C",
        "bpfwatch runqlat -m 1 5           # in msecs, every second, five times",
        "bpfwatch runqlat -P -d 10         # one histogram per process, for 10 s",
        "bpfwatch runqlat -p 1234 --json   # only process 1234, as JSON",
        "bpfwatch runqlat -L --comm nginx  # per thread of the nginx processes",
        "bpfwatch runqlat --per-container  # one histogram per container",
    ),
    exporter_default=True,
)


class Runqlat(Tracer):
    spec = SPEC
    interval = True

    def add_arguments(self, parser) -> None:
        _hist.add_arguments(parser, threads=True)

    def defines(self, args) -> dict[str, int]:
        return _hist.defines(args)

    def run(self, session, args) -> int:
        what = "run queue latency"
        return runner.summary_loop(session, args, what, (_hist.latency_histogram(args, "(no run queue waits seen)"),))


TRACER = Runqlat

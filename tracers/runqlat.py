"""runqlat: run-queue latency, how long runnable tasks wait for a CPU."""
from __future__ import annotations

import sys
import time

from tracers import common, fmt
from tracers.runtime.maps import as_int
from tracers.spec import Alternative, Hook, Metric, TracerSpec

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
    ),
    exporter_default=True,
)
INTERVAL = True


def add_arguments(parser) -> None:
    parser.add_argument("-m", "--milliseconds", action="store_true", help="histogram in msecs")
    who = parser.add_mutually_exclusive_group()
    who.add_argument("-P", "--pids", action="store_true", help="one histogram per process (TGID)")
    who.add_argument("-L", "--tids", action="store_true", help="one histogram per thread (TID)")


def defines(args) -> dict[str, int]:
    out = {"UNIT_NS": 1_000_000 if args.milliseconds else 1000}
    if args.pids:
        out["PER_PROCESS"] = 1
    if args.tids:
        out["PER_THREAD"] = 1
    return out


def read_slots(session) -> dict[int, int]:
    """Cumulative slot counts of the whole histogram (never cleared)."""
    out = {as_int(k): sum(per_cpu) for k, per_cpu in session.read_map("dist")}
    return {slot: count for slot, count in out.items() if count}


def read_per_id(session) -> dict[int, dict[int, int]]:
    out: dict[int, dict[int, int]] = {}
    for k, v in session.read_map("dist_pid"):
        out.setdefault(k.pid, {})[k.slot] = as_int(v)
    return out


def delta(now: dict[int, int], before: dict[int, int]) -> dict[int, int]:
    return {s: c - before.get(s, 0) for s, c in now.items() if c - before.get(s, 0) > 0}


def render(hists: dict, unit: str, id_name: str | None) -> str:
    """Text output: one histogram, or one per id (key None = the only one)."""
    parts = []
    for ident in sorted(hists, key=lambda i: -1 if i is None else i):
        text = fmt.log2_histogram(hists[ident], unit)
        if text:
            parts.append(text if ident is None else f"{id_name} = {ident}\n{text}")
    return "\n\n".join(parts)


def record(hists: dict, unit: str, id_name: str | None) -> list[dict]:
    """JSON form: slots as [{low, high, count}], total per histogram."""
    out = []
    for ident in sorted(hists, key=lambda i: -1 if i is None else i):
        slots = hists[ident]
        rows = [{"low": fmt.log2_bucket_bounds(s)[0], "high": fmt.log2_bucket_bounds(s)[1], "count": c}
                for s, c in sorted(slots.items()) if c]
        if rows:
            out.append({**({id_name: ident} if id_name else {}), "unit": unit,
                        "total": sum(r["count"] for r in rows), "buckets": rows})
    return out


def run(session, args) -> int:
    return histogram_loop(session, args, "run queue latency", "(no run queue waits seen)")


def histogram_loop(session, args, what: str, empty: str) -> int:
    """Print the log2 histogram(s) of `dist` (or per id, `dist_pid`) per interval."""
    unit = "msecs" if args.milliseconds else "usecs"
    id_name = "pid" if args.pids else "tid" if getattr(args, "tids", False) else None
    before: dict = {}
    common.announce(session, what)

    def tick(final: bool) -> None:
        nonlocal before
        if id_name:
            now = read_per_id(session)
            hists = {i: delta(s, before.get(i, {})) for i, s in now.items()}
        else:
            now = read_slots(session)
            hists = {None: delta(now, before)}
        before = now
        if args.json:
            common.emit({"time": round(time.time(), 3), "histograms": record(hists, unit, id_name),
                         "map_update_failures": session.stats()["map_update_failures"]})
            return
        print(f"[{time.strftime('%H:%M:%S')}]")
        print(render(hists, unit, id_name) or empty, flush=True)
        print(flush=True)

    common.interval_loop(args, tick)
    return 0


def main(argv=None) -> int:
    return common.main(sys.modules[__name__], argv)

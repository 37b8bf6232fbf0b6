"""syscount: syscalls counted in the kernel, per syscall or per process."""
from __future__ import annotations

import time

from tracers import decoders, options, runner
from tracers.runtime.maps import as_int
from tracers.spec import Alternative, Hook, Label, Metric, Tracer, TracerSpec, UsageError

SPEC = TracerSpec(
    name="syscount",
    summary="count syscalls per syscall (or per process), optionally with latency",
    c_file="syscount.bpf.c",
    alternatives=(
        # Raw tracepoints first: they skip the perf tracepoint glue (cheaper).
        Alternative("raw_tracepoint", (
            Hook("raw_tracepoint", "sys_enter", "on_sys_enter"),
            Hook("raw_tracepoint", "sys_exit", "on_sys_exit"),
        ), define="HOOK_RAW_TRACEPOINT"),
        Alternative("tracepoint", (
            Hook("tracepoint", "raw_syscalls:sys_enter", "on_sys_enter"),
            Hook("tracepoint", "raw_syscalls:sys_exit", "on_sys_exit"),
        ), define="HOOK_TRACEPOINT"),
    ),
    metrics=(
        Metric("syscalls_total", "Syscalls made, by syscall.", map="syscalls",
               labels=(Label("syscall", "", "syscall_name"),), value_field="count"),
    ),
    exporter_default=True,  # one per-CPU array slot per syscall: cheap, bounded
    examples=(
        "bpfwatch syscount                    # count until Ctrl-C, then print",
        "bpfwatch syscount 1 5                # every second, five times",
        "bpfwatch syscount -L -d 10           # with total latency, for 10 s",
        "bpfwatch syscount -P -p 1234         # per process, only PID 1234",
        "bpfwatch syscount --syscall openat   # one syscall only",
        "bpfwatch syscount -x --json 5        # failed syscalls, JSON every 5 s",
    ),
)






def read_totals(session, per_process: bool) -> dict:
    """Cumulative totals; the maps are never cleared (the exporter's counters)."""
    totals = {}
    if per_process:
        for key, value in session.read_map("proc_syscalls"):
            totals[(key.pid, decoders.comm(decoders.raw_field(value, "comm")), key.nr)] = \
                (value.count, value.total_ns)
        return totals
    for key, per_cpu in session.read_map("syscalls"):
        count = sum(v.count for v in per_cpu)
        if count:
            totals[as_int(key)] = (count, sum(v.total_ns for v in per_cpu))
    return totals


def deltas(now: dict, before: dict) -> list[tuple]:
    rows = []
    for key, (count, ns) in now.items():
        old_count, old_ns = before.get(key, (0, 0))
        if count > old_count:
            rows.append((key, count - old_count, ns - old_ns))
    return sorted(rows, key=lambda r: (-r[1], str(r[0])))


def to_record(args, key) -> dict:
    if args.process:
        pid, comm, nr = key
        return {"pid": pid, "comm": comm, "syscall": decoders.syscall_name(nr)}
    return {"syscall": decoders.syscall_name(key)}


class Syscount(Tracer):
    spec = SPEC
    interval = True

    def add_arguments(self, parser) -> None:
        parser.add_argument("-L", "--latency", action="store_true", help="also total time spent, per syscall")
        parser.add_argument("-P", "--process", action="store_true", help="count per process, not per syscall")
        parser.add_argument("-x", "--failed", action="store_true", help="only failed syscalls")
        parser.add_argument("--syscall", metavar="NAME", help="only this syscall (name, e.g. openat)")
        parser.add_argument("-T", "--top", type=options.positive_int, default=10, help="rows shown (default 10)")

    def defines(self, args) -> dict[str, int]:
        out = {}
        if args.latency or args.failed:
            out["COUNT_AT_EXIT"] = 1
        if args.failed:
            out["FAILED_ONLY"] = 1
        if args.process:
            out["PER_PROCESS"] = 1
        if args.syscall:
            try:
                out["FILTER_SYSCALL"] = decoders.syscall_number(args.syscall)
            except ValueError as exc:
                raise UsageError(str(exc)) from None
        return out

    def skip_hooks(self, args) -> set[str]:
        # The exit hook only matters when counting at exit.
        return set() if (args.latency or args.failed) else {"on_sys_exit"}

    def run(self, session, args) -> int:
        before: dict = {}
        started = time.time()
        runner.announce(session, "syscalls")

        def tick(final: bool) -> None:
            nonlocal before, started
            now = read_totals(session, args.process)
            rows = deltas(now, before)
            before, began, started = now, started, time.time()
            if args.json:
                runner.emit({
                    "time": round(started, 3), "interval_s": round(started - began, 3),
                    "syscalls": [dict(to_record(args, k), count=c, **({"total_ns": ns} if args.latency else {}))
                                 for k, c, ns in rows[:args.top]],
                    "events_dropped": session.stats()["map_update_failures"],
                })
                return
            print(f"[{time.strftime('%H:%M:%S')}]")
            who = f"{'PID':<8} {'COMM':<16} " if args.process else ""
            print(f"{who}{'SYSCALL':<22} {'COUNT':>10}" + (f" {'TIME (us)':>14}" if args.latency else ""))
            for key, count, ns in rows[:args.top]:
                rec = to_record(args, key)
                who = f"{rec['pid']:<8} {rec['comm']:<16} " if args.process else ""
                print(f"{who}{rec['syscall']:<22} {count:>10}" + (f" {ns / 1000:>14.1f}" if args.latency else ""))
            print(flush=True)

        runner.interval_loop(args, tick)
        return 0


TRACER = Syscount

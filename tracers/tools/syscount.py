"""syscount: syscalls counted in the kernel, per syscall or per process."""
from __future__ import annotations

from tracers import containers, decoders, options, runner
from tracers.mapdata import NUMBER
from tracers.spec import Alternative, Hook, Label, Metric, Tracer, TracerSpec, UsageError
from tracers.summary import Table, TableWithOther, count, label

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


class Syscount(Tracer):
    spec = SPEC
    interval = True

    def add_arguments(self, parser) -> None:
        parser.add_argument("-L", "--latency", action="store_true", help="also total time spent, per syscall")
        per = parser.add_mutually_exclusive_group()
        per.add_argument("-P", "--process", action="store_true", help="count per process, not per syscall")
        per.add_argument("--per-container", action="store_true",
                         help="count per container and syscall (host tasks: one '-' row per syscall)")
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
        if args.per_container:
            out["PER_CGROUP"] = 1
        if args.syscall:
            try:
                out["FILTER_SYSCALL"] = decoders.syscall_number(args.syscall)
            except ValueError as exc:
                raise UsageError(str(exc)) from None
        return out

    def skip_hooks(self, args) -> set[str]:
        # The exit hook only matters when counting at exit.
        return set() if (args.latency or args.failed) else {"on_sys_exit"}

    def tables(self, args) -> tuple[Table, ...]:
        who = (label("pid", "PID", 8, "pid", NUMBER), label("comm", "COMM", 16, "value.comm", "comm"))
        syscall = label("syscall", "SYSCALL", 22, "nr" if args.process or args.per_container else "",
                        "syscall_name")
        counts = [count("count", "COUNT", 10, "count")]
        if args.latency:
            counts.append(count("total_ns", "TIME (us)", 14, "total_ns", text_scale=1e-3, text_format=".1f"))
        if args.per_container:  # LRU too: the exact array gives evictions an `other` row
            exact = Table("totals", "syscalls", (label("syscall", "SYSCALL", 22, "", "syscall_name"), *counts))
            where = label("container", "CONTAINER", 12, "cgroup_id", "container")
            return (TableWithOther("syscalls", "cgroup_syscalls", (where, syscall, *counts), top=args.top,
                                   exact=exact, group="syscall", decoders=containers.short_id_decoders()),)
        if not args.process:
            return (Table("syscalls", "syscalls", (syscall, *counts), top=args.top),)
        # Per-process rows live in an LRU map; the per-syscall array is exact:
        # what evictions took shows as an `other` row per syscall.
        exact = Table("totals", "syscalls", (label("syscall", "SYSCALL", 22, "", "syscall_name"), *counts))
        return (TableWithOther("syscalls", "proc_syscalls", (*who, syscall, *counts), top=args.top,
                               exact=exact, group="syscall"),)

    def run(self, session, args) -> int:
        return runner.summary_loop(session, args, "syscalls", self.tables(args))


TRACER = Syscount

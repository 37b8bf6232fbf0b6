"""execsnoop: trace every exec() with its arguments and result."""
from __future__ import annotations

import time

from tracers import decoders, options, runner
from tracers.spec import Alternative, Hook, Label, Metric, Tracer, TracerSpec, UsageError

MAX_ARGS = 20  # argv entries kept per exec, by default
ARG_LEN = 128  # bytes kept per argument, NUL included: passed to the C
TASK_FIELDS = {"OFF_TASK_REAL_PARENT": ("task_struct", "real_parent"),
               "OFF_TASK_TGID": ("task_struct", "tgid")}

SPEC = TracerSpec(
    name="execsnoop",
    summary="trace new processes: every exec with pid, ppid, uid, argv and result",
    c_file="execsnoop.bpf.c",
    alternatives=(
        Alternative("tracepoint", (
            Hook("tracepoint", "syscalls:sys_enter_execve", "on_execve_enter", cli_only=True),
            Hook("tracepoint", "syscalls:sys_exit_execve", "on_execve_exit"),
            Hook("tracepoint", "syscalls:sys_enter_execveat", "on_execveat_enter", optional=True,
                 cli_only=True),
            Hook("tracepoint", "syscalls:sys_exit_execveat", "on_execveat_exit", optional=True),
            Hook("tracepoint", "sched:sched_process_exec", "on_exec", optional=True, cli_only=True),
        ), define="HOOK_TRACEPOINT", btf_fields=TASK_FIELDS, needs=("ringbuf",)),
        Alternative("kprobe", (
            Hook("kprobe", "syscall:execve", "on_execve_enter", cli_only=True),
            Hook("kretprobe", "syscall:execve", "on_execve_exit"),
            Hook("tracepoint", "sched:sched_process_exec", "on_exec", optional=True, cli_only=True),
        ), define="HOOK_KPROBE", btf_fields=TASK_FIELDS, needs=("ringbuf",)),
    ),
    events_map="events",
    # The exporter counts execs in the kernel instead of streaming them: its
    # program has only the exit entry points (the cli_only hooks are the stream's).
    metrics=(
        Metric("execs_total", "exec() calls completed, successful or not.", map="execs",
               labels=(Label("container", "", "cgroup"),)),
        Metric("exec_failures_total", "Failed exec() calls, by errno.", map="exec_errors",
               labels=(Label("errno", "err", "errno_name"), Label("container", "cgroup_id", "cgroup"))),
    ),
    exporter_defines={"COUNT_ONLY": 1},
    exporter_default=True,
    examples=(
        "bpfwatch execsnoop                 # every exec, as it happens",
        "bpfwatch execsnoop --failed        # failed execs only",
        "bpfwatch execsnoop --json -d 5     # JSON lines for 5 seconds",
        "bpfwatch execsnoop --comm bash     # execs that become bash",
        "bpfwatch execsnoop -p 1234         # execs by process 1234",
    ),
)


def to_record(event, boot_offset: float) -> dict:
    """Text fields escaped (decoders.escaped: every byte recoverable); every
    cut marked: filename_truncated, argv_truncated (indexes of entries cut to
    ARG_LEN - 1 bytes), argv_more (entries beyond --max-args left out) and
    args_truncated when either happened to argv."""
    raw = decoders.raw_field(event, "argv")
    argv = [decoders.escaped(raw[i * ARG_LEN:(i + 1) * ARG_LEN]) for i in range(event.argc)]
    cut = [i for i in range(event.argc) if event.argv_cut >> i & 1]
    return {
        "time": round(event.ts / 1e9 + boot_offset, 6),
        "pid": event.pid,
        "ppid": event.ppid,
        "cgroup_id": event.cgroup_id,
        "uid": event.uid,
        "comm": decoders.escaped(decoders.raw_field(event, "comm")),
        "filename": decoders.escaped(decoders.raw_field(event, "filename")),
        "filename_truncated": bool(event.filename_truncated),
        "argv": argv,
        "argv_truncated": cut,
        "argv_more": bool(event.argv_more),
        "args_truncated": bool(cut) or bool(event.argv_more),
        "ret": event.retval,
        "error": decoders.errno_name(event.retval) if event.retval < 0 else None,
    }


def format_line(rec: dict) -> str:
    """Text: a cut entry ends in "…", left-out entries show as " ..."."""
    cut = set(rec["argv_truncated"])
    args = " ".join(a + ("…" if i in cut else "") for i, a in enumerate(rec["argv"]))
    args += " ..." if rec["argv_more"] else ""
    filename = rec["filename"] + ("…" if rec["filename_truncated"] else "")
    when = time.strftime("%H:%M:%S", time.localtime(rec["time"]))
    return (f"{when} {rec['pid']:<7} {rec['ppid']:<7} {rec['uid']:<6} {rec['ret']:>4} "
            f"{rec['comm']:<16} {filename}  {args}")


class Execsnoop(Tracer):
    spec = SPEC

    def add_arguments(self, parser) -> None:
        # no -x: bcc's -x adds failed execs to its output; ours always shows them
        parser.add_argument("--failed", action="store_true", help="only failed execs")
        parser.add_argument("--max-args", type=options.positive_int, default=MAX_ARGS,
                            help=f"argv entries kept per exec (default {MAX_ARGS}, at most 60)")

    def defines(self, args) -> dict[str, int]:
        if args.max_args > 60:
            raise UsageError("--max-args is at most 60")
        out = {"MAX_ARGS": args.max_args, "ARG_LEN": ARG_LEN}
        if args.failed:
            out["FAILED_ONLY"] = 1
        return out

    def run(self, session, args) -> int:
        header = f"{'TIME':<8} {'PID':<7} {'PPID':<7} {'UID':<6} {'RET':>4} {'COMM':<16} FILENAME  ARGS"
        return runner.stream_events(session, args, "exec()", header, to_record, format_line)


TRACER = Execsnoop

"""opensnoop: trace file opens with flags, path and result."""
from __future__ import annotations

import os
import time

from tracers import decoders, runner
from tracers.spec import Alternative, Hook, Label, Metric, Tracer, TracerSpec, UsageError

PATH_LEN = 256  # bytes kept per path, NUL included (C: PATH_LEN)
PREFIX_MAX = 32  # --path-prefix bytes the kernel compares (four u64 words)
CALLS = {1: "open", 2: "openat", 3: "openat2", 4: "open*"}


def _pair(name: str, optional: bool = False) -> tuple[Hook, Hook]:
    enter = "on_open_enter" if name == "open" else f"on_{name}_enter"
    return (Hook("tracepoint", f"syscalls:sys_enter_{name}", enter, optional=optional),
            Hook("tracepoint", f"syscalls:sys_exit_{name}", "on_open_exit", optional=optional))


def _kpair(name: str, optional: bool = False) -> tuple[Hook, Hook]:
    enter = "on_open_enter" if name == "open" else f"on_{name}_enter"
    return (Hook("kprobe", f"syscall:{name}", enter, optional=optional),
            Hook("kretprobe", f"syscall:{name}", "on_open_exit", optional=optional))


SPEC = TracerSpec(
    name="opensnoop",
    summary="trace file opens: pid, comm, flags, path and the fd or error",
    c_file="opensnoop.bpf.c",
    alternatives=(
        # open() does not exist on every architecture: optional.
        Alternative("tracepoint", (*_pair("openat"), *_pair("open", True), *_pair("openat2", True)),
                    define="HOOK_TRACEPOINT", needs=("ringbuf",)),
        # One function behind all three syscalls (BCC attaches it at load).
        Alternative("fexit", (Hook("fexit", "do_sys_openat2", "on_do_sys_openat2_exit"),),
                    define="HOOK_FEXIT", needs=("ringbuf",)),
        Alternative("kprobe", (*_kpair("openat"), *_kpair("open", True), *_kpair("openat2", True)),
                    define="HOOK_KPROBE", needs=("ringbuf",)),
    ),
    metrics=(
        Metric("file_opens_total", "File opens, by result (ok or errno name).", map="opens",
               labels=(Label("result", "", "errno_result"),)),
    ),
    events_map="events",
    exporter_defines={"COUNT_ONLY": 1},
    examples=(
        "bpfwatch opensnoop                        # every open, as it happens",
        "bpfwatch opensnoop -x                     # failed opens only",
        "bpfwatch opensnoop --path-prefix /etc/    # paths starting with /etc/",
        "bpfwatch opensnoop -p 1234 --json         # process 1234, JSON lines",
        "bpfwatch opensnoop --comm nginx -d 10     # nginx's opens for 10 seconds",
    ),
)

# x86_64 values (asm-generic/fcntl.h), fixed so output never depends on libc.
O_FLAGS = (
    (0o100, "O_CREAT"), (0o200, "O_EXCL"), (0o400, "O_NOCTTY"), (0o1000, "O_TRUNC"),
    (0o2000, "O_APPEND"), (0o4000, "O_NONBLOCK"), (0o4010000, "O_SYNC"), (0o10000, "O_DSYNC"),
    (0o20000, "O_ASYNC"), (0o40000, "O_DIRECT"), (0o100000, "O_LARGEFILE"),
    (0o20200000, "O_TMPFILE"), (0o200000, "O_DIRECTORY"), (0o400000, "O_NOFOLLOW"),
    (0o1000000, "O_NOATIME"), (0o2000000, "O_CLOEXEC"), (0o10000000, "O_PATH"),
)
ACCESS = ("O_RDONLY", "O_WRONLY", "O_RDWR", "O_ACCMODE")


def open_flags(flags: int) -> str:
    """0o2000101 -> "O_WRONLY|O_CREAT|O_CLOEXEC"; unknown bits as hex."""
    names, rest = [ACCESS[flags & 3]], flags & ~3
    for bit, name in O_FLAGS:  # composite flags (O_SYNC, O_TMPFILE) first
        if rest & bit == bit:
            names.append(name)
            rest &= ~bit
    if rest:
        names.append(hex(rest))
    return "|".join(names)


def prefix_defines(prefix: str) -> dict[str, int]:
    """The prefix as PREFIX_LEN and four little-endian u64 words."""
    raw = os.fsencode(prefix)
    if not raw:
        raise UsageError("--path-prefix must not be empty")
    if len(raw) > PREFIX_MAX:
        raise UsageError(f"--path-prefix is at most {PREFIX_MAX} bytes, "
                         f"got {len(raw)}")
    padded = raw.ljust(PREFIX_MAX, b"\0")
    out = {"PREFIX_LEN": len(raw)}
    for i in range(4):
        out[f"PREFIX_{i}"] = int.from_bytes(padded[8 * i:8 * i + 8], "little")
    return out


def to_record(event, boot_offset: float) -> dict:
    return {
        "time": round(event.ts / 1e9 + boot_offset, 6),
        "pid": event.pid,
        "tid": event.tid,
        "uid": event.uid,
        "cgroup_id": event.cgroup_id,
        "comm": decoders.escaped(decoders.raw_field(event, "comm")),
        "call": CALLS.get(event.call, str(event.call)),
        # openat2's struct open_how unreadable: unknown, never a made-up 0
        "flags": None if event.flags_unread else event.flags,
        "flags_text": "?" if event.flags_unread else open_flags(event.flags),
        "path": decoders.escaped(decoders.raw_field(event, "path")),
        "path_truncated": bool(event.path_truncated),  # cut at PATH_LEN - 1 bytes
        "ret": event.ret,
        "error": decoders.errno_name(event.ret) if event.ret < 0 else None,
    }


def format_line(rec: dict) -> str:
    when = time.strftime("%H:%M:%S", time.localtime(rec["time"]))
    fd, err = (rec["ret"], "") if rec["ret"] >= 0 else (-1, rec["error"])
    return (f"{when} {rec['pid']:<7} {rec['comm']:<16} {fd:>4} {err:<7} "
            f"{rec['flags_text']:<28} {rec['path']}{'…' if rec['path_truncated'] else ''}")


class Opensnoop(Tracer):
    spec = SPEC

    def add_arguments(self, parser) -> None:
        parser.add_argument("-x", "--failed", action="store_true", help="only failed opens")
        parser.add_argument("--path-prefix", metavar="PREFIX",
                            help=f"only paths starting with PREFIX, as the caller passed them "
                                 f"(at most {PREFIX_MAX} bytes, compared in the kernel)")

    def defines(self, args) -> dict[str, int]:
        out = {"FAILED_ONLY": 1} if args.failed else {}
        if args.path_prefix is not None:
            out.update(prefix_defines(args.path_prefix))
        return out

    def run(self, session, args) -> int:
        header = f"{'TIME':<8} {'PID':<7} {'COMM':<16} {'FD':>4} {'ERR':<7} {'FLAGS':<28} PATH"
        return runner.stream_events(session, args, "file opens", header, to_record, format_line)


TRACER = Opensnoop

"""funclatency: latency histogram of one kernel or user function.

The function is known only at run time, so the hooks are built per run
(spec_for). fentry/fexit programs are bound to their target at load time:
the runtime loads the generic entry/return programs under the target's name
(runtime/multiattach.py); kprobes and uprobes attach the usual way.
"""
from __future__ import annotations

from tracers import runner
from tracers.mapdata import number
from tracers.tools._funcs import KERNEL_NAME, USER_NAME
from tracers.summary import Histogram
from tracers.spec import Alternative, Hook, Tracer, TracerSpec, UsageError

UNITS = {"nsecs": 1, "usecs": 1000, "msecs": 1_000_000}
MAX_DEPTH = 32  # entry times kept per thread (recursion); C: MAX_DEPTH, a power of two


def _alts(target: str, user: bool, placeholder: bool = False) -> tuple[Alternative, ...]:
    # A placeholder target (the static SPEC) is optional so that planning
    # judges only the kernel's features (`needs`), not the made-up name.
    def pair(kind, ret_kind):
        return (Hook(kind, target, "on_entry", optional=placeholder),
                Hook(ret_kind, target, "on_return", optional=placeholder))
    if user:
        return (Alternative("uprobe", pair("uprobe", "uretprobe"), define="HOOK_UPROBE",
                            needs=("uprobe",)),)
    return (Alternative("fentry", pair("fentry", "fexit"), define="HOOK_FENTRY", needs=("fentry",)),
            Alternative("kprobe", pair("kprobe", "kretprobe"), define="HOOK_KPROBE", needs=("kprobe",)))


# What `bpfwatch list` and --help see; a run names the function (spec_for).
SPEC = TracerSpec(
    name="funclatency",
    summary="latency of one kernel or user function as a log2 histogram",
    c_file="funclatency.bpf.c",
    alternatives=(*_alts("FUNCTION", False, True), *_alts("LIBRARY:FUNCTION", True, True)),
    examples=(
        "bpfwatch funclatency do_sys_openat2          # kernel function, nsecs, until Ctrl-C",
        "bpfwatch funclatency -u -d 10 vfs_read       # usecs, for ten seconds",
        "bpfwatch funclatency -m c:nanosleep 5 3      # libc's nanosleep, msecs, 3 x 5 s",
        "bpfwatch funclatency --hook kprobe vfs_write # kprobe+kretprobe even if fentry works",
        "bpfwatch funclatency -p 1234 /usr/bin/python3:PyEval_EvalCode",
    ),
)


def parse_function(text: str) -> tuple[str, str]:
    """("kernel", name) or ("user", "lib:name"); no wildcards here."""
    library, sep, name = text.rpartition(":")
    if "*" in text or "?" in text:
        raise ValueError(f"{text!r}: one function, no wildcards (funccount takes patterns)")
    if not sep:
        if not KERNEL_NAME.fullmatch(name):
            raise ValueError(f"bad kernel function name {name!r}")
        return "kernel", name
    if not library or not USER_NAME.fullmatch(name):
        raise ValueError(f"bad user function {text!r} (want LIBRARY:FUNCTION)")
    return "user", text


def unit_of(args) -> str:
    return "msecs" if args.milliseconds else "usecs" if args.microseconds else "nsecs"


class Funclatency(Tracer):
    spec = SPEC
    interval = True

    def add_positionals(self, parser) -> None:
        parser.add_argument("function", metavar="FUNCTION",
                            help="kernel function, or LIBRARY:FUNCTION (a path or a library name)")

    def add_arguments(self, parser) -> None:
        unit = parser.add_mutually_exclusive_group()
        unit.add_argument("-u", "--microseconds", action="store_true", help="histogram in usecs")
        unit.add_argument("-m", "--milliseconds", action="store_true", help="histogram in msecs")

    def defines(self, args) -> dict[str, int]:
        args.function  # noqa: B018 (the exporter, which passes no FUNCTION, stops here)
        return {"UNIT_NS": UNITS[unit_of(args)], "MAX_DEPTH": MAX_DEPTH}

    def session_spec(self, args) -> TracerSpec:
        try:
            kind, target = parse_function(args.function)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        alts = _alts(target, kind == "user")
        if args.hook and args.hook not in [a.name for a in alts]:
            raise UsageError(f"--hook {args.hook} does not fit {kind} function {args.function!r}")
        return TracerSpec(name=SPEC.name, summary=SPEC.summary, c_file=SPEC.c_file,
                          alternatives=alts, examples=SPEC.examples)

    def attachers(self, args) -> dict:
        """fentry/fexit: the generic programs loaded under the target's name."""
        def attach(session, hook):
            from tracers.runtime import LoadError, multiattach
            if "multi" not in state:
                state["multi"] = multiattach.MultiAttach(session)
            try:
                state["multi"].fentry(hook.fn, hook.target, ret=hook.kind == "fexit")
            except (multiattach.AttachFailed, OSError) as exc:
                raise LoadError(f"cannot attach {hook.kind} {hook.target}: {exc}") from None
        state: dict = {}
        return {"fentry": attach, "fexit": attach}

    def run(self, session, args) -> int:
        hist = Histogram("dist", unit_of(args), empty="(no calls seen)", flat=True)
        # calls not timed, this interval's: nested deeper than MAX_DEPTH, and
        # (uprobes) ended without returning, by longjmp or an exception
        untimed = {"overflows": [0, 0], "abandoned": [0, 0]}  # map: [total so far, interval]

        def extra(rows) -> dict:
            for name, seen in untimed.items():
                now = sum(number(per_cpu) for _key, per_cpu in session.read_map(name))
                seen[:] = [now, now - seen[0]]
            return {"function": args.function, "depth_overflows": untimed["overflows"][1],
                    "abandoned": untimed["abandoned"][1]}

        def footer(rows) -> list[str]:  # text output (extra() serves JSON)
            extra(rows)
            calls = f"calls: {sum(sum(h.values()) for h in rows[0].values())}"
            if untimed["overflows"][1]:
                calls += f" (and {untimed['overflows'][1]} nested over {MAX_DEPTH} deep, not timed)"
            if untimed["abandoned"][1]:
                calls += f" (and {untimed['abandoned'][1]} left by longjmp or an exception, not timed)"
            return [calls]
        return runner.summary_loop(session, args, f"{args.function} latency", (hist,),
                                   title=args.function, extra=extra, footer=footer)


TRACER = Funclatency

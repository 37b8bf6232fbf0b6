"""funccount: count calls of kernel functions, user functions or tracepoints.

The targets come from a pattern at run time, so the hooks are built per run
(spec_for): one Hook per matched target, all running the same program; the
probe's index reaches the kernel as its BPF cookie (runtime/multiattach.py).
"""
from __future__ import annotations

import re
import sys
from dataclasses import dataclass

from tracers import decoders, options, runner
from tracers.mapdata import number
from tracers.summary import Table, count, label
from tracers.runtime.kconst import KPROBE_BLACKLIST, TRACEFS
from tracers.tools._funcs import EVENT_NAME, KERNEL_NAME, USER_NAME
from tracers.spec import Alternative, Hook, Tracer, TracerSpec, UsageError

MAX_PROBES = 1000


def _alt(name: str, kind: str, target: str, feature: str) -> Alternative:
    # Hooks are optional: a target that cannot be probed is skipped, not fatal;
    # `needs` still rejects the alternative when the kernel lacks the feature.
    return Alternative(name, (Hook(kind, target, "on_count", optional=True),),
                       define=f"HOOK_{name.upper()}", needs=(feature,))


# What `bpfwatch list` and --help see; a run replaces the targets (spec_for).
SPEC = TracerSpec(
    name="funccount",
    summary="count calls of kernel functions, user functions or tracepoints matching a pattern",
    c_file="funccount.bpf.c",
    alternatives=(
        _alt("fentry", "fentry", "FUNCTION", "fentry"),
        _alt("kprobe", "kprobe", "FUNCTION", "kprobe"),
        _alt("tracepoint", "tracepoint", "CATEGORY:EVENT", "tracepoint"),
        _alt("uprobe", "uprobe", "LIBRARY:FUNCTION", "uprobe"),
    ),
    examples=(
        "bpfwatch funccount 'vfs_*'                  # kernel functions, until Ctrl-C",
        "bpfwatch funccount -d 5 'tcp_send*'         # for five seconds",
        "bpfwatch funccount --hook kprobe do_sys_openat2   # kprobes even if fentry works",
        "bpfwatch funccount 't:sched:sched_*' 1 10   # tracepoints, every second, ten times",
        "bpfwatch funccount 'c:malloc'               # libc's malloc (uprobe)",
        "bpfwatch funccount -p 1234 '/usr/bin/python3:PyObject_Call*'",
    ),
)
KINDS = {"kernel": ("fentry", "kprobe"), "tracepoint": ("tracepoint",), "user": ("uprobe",)}


@dataclass(frozen=True)
class Pattern:
    kind: str  # kernel | tracepoint | user
    library: str  # user functions only
    category: str  # tracepoints only
    name: str


def parse_pattern(text: str) -> Pattern:
    """`func`, `k:func`, `t:category:event`, `lib:func` (wildcards: * and ?)."""
    parts = text.split(":")
    if len(parts) == 3 and parts[0] == "t":
        _, category, name = parts
        if not (EVENT_NAME.fullmatch(category) and EVENT_NAME.fullmatch(name)):
            raise ValueError(f"bad tracepoint pattern {text!r} (want t:CATEGORY:EVENT)")
        return Pattern("tracepoint", "", category, name)
    if len(parts) == 1 or (len(parts) == 2 and parts[0] == "k"):
        name = parts[-1]
        if not KERNEL_NAME.fullmatch(name):
            raise ValueError(f"bad kernel function pattern {name!r}")
        return Pattern("kernel", "", "", name)
    if len(parts) == 2:
        library, name = parts
        if library in ("t", "u", "p"):  # reserved prefixes, as in bcc's funccount
            raise ValueError(f"bad pattern {text!r} (tracepoints are t:CATEGORY:EVENT)")
        if not library or "*" in library or not USER_NAME.fullmatch(name):
            raise ValueError(f"bad user function pattern {text!r} (want LIBRARY:FUNCTION)")
        return Pattern("user", library, "", name)
    raise ValueError(f"bad pattern {text!r} (want FUNCTION, t:CATEGORY:EVENT or LIBRARY:FUNCTION)")


def glob_regex(pattern: str) -> re.Pattern:
    """`*` any run of characters, `?` one character; all else literal."""
    body = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.compile(f"^{body}$")


def match(names, pattern: str) -> list[str]:
    """Names matching a glob, in first-seen order, without duplicates."""
    wanted = glob_regex(pattern)
    return list(dict.fromkeys(n for n in names if wanted.match(n)))


def kernel_functions() -> list[str]:
    """Functions ftrace can trace (notrace ones are absent), without module tags."""
    with open(TRACEFS / "available_filter_functions") as f:
        return [line.split(" ", 1)[0].strip() for line in f if line.strip()]


def blacklisted() -> set[str]:
    try:
        return {line.split()[-1] for line in KPROBE_BLACKLIST.read_text().splitlines() if line.strip()}
    except OSError:
        return set()


def tracepoints(category: str, name: str) -> list[str]:
    found = [f"{p.parent.parent.name}:{p.parent.name}"
             for p in (TRACEFS / "events").glob(f"{category}/{name}/id")]
    return sorted(found)


def alias_order(name: str) -> tuple:
    """The name a user writes first: fewest leading underscores, then shortest."""
    return (len(name) - len(name.lstrip("_")), len(name), name)


def user_targets(path: str, addresses: dict[str, int], pattern: str) -> tuple[list[str], list[str]]:
    """One target per address (aliases of a function share one, and one probe
    would otherwise count every call once per alias): (hook targets, display
    names "path:name|alias|...")."""
    by_address: dict[int, list[str]] = {}
    for name in match(addresses, pattern):
        by_address.setdefault(addresses[name], []).append(name)
    groups = [sorted(names, key=alias_order) for names in by_address.values()]
    return [f"{path}:{g[0]}" for g in groups], [f"{path}:{'|'.join(g)}" for g in groups]


@dataclass(frozen=True)
class Targets:
    pattern: Pattern
    hooks: list[str]  # hook targets, one per probed address or event
    names: list[str]  # what each is shown as (aliases joined)


def resolve(args) -> Targets:
    """The pattern's targets on this machine."""
    from tracers import runtime
    from tracers.runtime import multiattach
    try:
        pattern = parse_pattern(args.pattern)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if args.hook and args.hook not in KINDS[pattern.kind]:
        raise UsageError(f"--hook {args.hook} does not fit {pattern.kind} pattern "
                         f"{args.pattern!r} (use {' or '.join(KINDS[pattern.kind])})")
    runtime.require_root()
    # Features first (mounts tracefs too): a kernel without kprobes or fentry
    # hides available_filter_functions.
    fitting = TracerSpec(name=SPEC.name, summary=SPEC.summary, c_file=SPEC.c_file,
                         alternatives=tuple(a for a in SPEC.alternatives
                                            if a.name in KINDS[pattern.kind]))
    runtime.planner.require(fitting, runtime.get_probe(), args.hook)
    try:
        if pattern.kind == "kernel":
            targets = names = match(kernel_functions(), pattern.name)
        elif pattern.kind == "tracepoint":
            targets = names = tracepoints(pattern.category, pattern.name)
        else:
            path = multiattach.library_path(pattern.library)
            if path is None:
                raise UsageError(f"no library or executable {pattern.library!r}")
            targets, names = user_targets(path, multiattach.user_function_addresses(path), pattern.name)
    except (OSError, multiattach.AttachFailed) as exc:
        raise UsageError(f"cannot list targets: {exc}") from None
    if not targets:
        raise UsageError(f"nothing matches {args.pattern!r}")
    if len(targets) > args.max_probes:
        raise UsageError(f"{args.pattern!r} matches {len(targets)} targets, more than "
                         f"--max-probes {args.max_probes}; narrow the pattern or raise the cap")
    return Targets(pattern, targets, names)


def counts_table(targets: list[str], top: int | None) -> Table:
    """Calls per probe: the map is indexed by the probe's cookie (its index)."""
    def probe(index) -> str:
        i = number(index)
        if not 0 <= i < len(targets):
            raise decoders.DecodeError(f"no probe {i}")
        return decoders.text(targets[i].encode())  # the operator's own probe names
    width = max([40, *(len(t) for t in targets)])
    return Table("counts", "counts", (label("probe", "FUNC", width, "", "probe"), count("count", "COUNT", 10)),
                 top=top, decoders={"probe": probe})


class Funccount(Tracer):
    spec = SPEC
    interval = True

    def __init__(self):
        self.targets: Targets | None = None  # per run: resolved once, in setup
        self.attached: list[str] = []
        self.skipped: list[tuple[str, str]] = []

    def _targets(self, args) -> Targets:
        if self.targets is None:
            self.targets = resolve(args)
        return self.targets

    def add_positionals(self, parser) -> None:
        parser.add_argument("pattern", metavar="PATTERN",
                            help="FUNCTION (kernel), t:CATEGORY:EVENT or LIBRARY:FUNCTION; * and ? match")

    def add_arguments(self, parser) -> None:
        parser.add_argument("--max-probes", type=options.positive_int, default=MAX_PROBES,
                            help=f"refuse patterns matching more targets (default {MAX_PROBES})")
        # no -T: bcc's funccount -T is --timestamp
        parser.add_argument("--top", type=options.positive_int, default=None,
                            help="rows shown per interval (default: all)")

    def defines(self, args) -> dict[str, int]:
        return {"NPROBES": len(self._targets(args).hooks)}

    def session_spec(self, args) -> TracerSpec:
        """SPEC with one hook per target, for the alternatives that fit the pattern."""
        pattern, targets = self._targets(args).pattern, self._targets(args).hooks
        alts = []
        for alt in SPEC.alternatives:
            if alt.name in KINDS[pattern.kind]:
                kind = alt.hooks[0].kind
                hooks = tuple(Hook(kind, t, "on_count", optional=True) for t in targets)
                alts.append(Alternative(alt.name, hooks, define=alt.define, needs=alt.needs))
        return TracerSpec(name=SPEC.name, summary=SPEC.summary, c_file=SPEC.c_file,
                          alternatives=tuple(alts), examples=SPEC.examples)

    def attachers(self, args) -> dict:
        """Attach each target with its index as cookie; record what fails."""
        from tracers.runtime import multiattach
        index = {t: i for i, t in enumerate(self._targets(args).hooks)}
        self.skipped, self.attached = [], []
        state = {}
        refused = blacklisted()

        def attach(session, hook):
            if "multi" not in state:
                state["multi"] = multiattach.MultiAttach(session)
            multi, cookie = state["multi"], index[hook.target]
            try:
                if hook.kind == "kprobe":
                    if hook.target in refused:
                        raise multiattach.AttachFailed("on the kprobe blacklist")
                    multi.kprobe("on_count", hook.target, cookie)
                elif hook.kind == "fentry":
                    multi.fentry("on_count", hook.target, cookie)
                elif hook.kind == "tracepoint":
                    multi.tracepoint("on_count", hook.target, cookie)
                else:
                    library, _, symbol = hook.target.rpartition(":")
                    path, offset = multiattach.user_symbol(library, symbol, session.pid)
                    multi.uprobe("on_count", path, offset, cookie, pid=session.pid)
            except (multiattach.AttachFailed, OSError) as exc:
                self.skipped.append((hook.target, str(exc)))
                return
            self.attached.append(hook.target)
        return {kind: attach for kind in ("kprobe", "fentry", "tracepoint", "uprobe")}

    def run(self, session, args) -> int:
        from tracers.runtime import BpfwatchError
        prog = "bpfwatch funccount"
        targets = self._targets(args)
        for target, why in self.skipped:
            print(f"{prog}: skipped {decoders.text(target.encode())}: {why}", file=sys.stderr)
        if not self.attached:
            raise BpfwatchError(f"none of the {len(targets.hooks)} targets of {args.pattern!r} "
                                "could be probed")
        return runner.summary_loop(
            session, args, f"{len(self.attached)} of {len(targets.hooks)} targets of {args.pattern!r}",
            (counts_table(targets.names, args.top),),
            extra=lambda rows: {"probes": len(self.attached), "skipped": len(self.skipped)})


TRACER = Funccount

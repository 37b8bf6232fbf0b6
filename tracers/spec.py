"""A tracer declared once, as data.

The CLI prints what a TracerSpec's program streams or aggregates; the
exporter serves the same spec's maps as metrics. Nothing here imports bcc.
"""
from __future__ import annotations

from dataclasses import dataclass, field

# Hook kinds the runtime knows how to probe for and attach.
HOOK_KINDS = (
    "tracepoint", "raw_tracepoint", "kprobe", "kretprobe", "fentry", "fexit",
    "uprobe", "uretprobe", "perf_event", "tc", "socket_filter", "xdp", "lsm",
)


@dataclass(frozen=True)
class Hook:
    """One attachment: kind, target and the C entry point (`on_<event>`).

    target: "cat:name" for tracepoints, "name" for raw tracepoints, a kernel
    function for kprobes/fentry, "lib:symbol" for uprobes. A kprobe target
    starting with "syscall:" names a syscall ("syscall:execve") and is
    resolved to the kernel's wrapper symbol at attach time.
    """
    kind: str
    target: str
    fn: str
    optional: bool = False  # attach when possible, never a reason to skip
    cli_only: bool = False  # the exporter does not attach it (its program lacks it, or its option)

    def __post_init__(self):
        if self.kind not in HOOK_KINDS:
            raise ValueError(f"unknown hook kind {self.kind!r}")
        # BCC finds an LSM program's hook by its name: lsm__<hook>
        prefix = "lsm__" if self.kind == "lsm" else "on_"
        if not self.fn.startswith(prefix):
            raise ValueError(f"entry point {self.fn!r} must be named {prefix}<event>")


@dataclass(frozen=True)
class Alternative:
    """One way to run a tracer; a tracer lists them best first.

    `define` selects the matching code in the C file (-D<define>=1).
    `btf_fields` maps -D names to (struct, field path) whose offsets the
    runtime resolves from the running kernel's BTF; an unresolvable field
    makes this alternative ineligible.
    """
    name: str
    hooks: tuple[Hook, ...]
    define: str = ""
    btf_fields: dict[str, tuple[str, str]] = field(default_factory=dict)
    needs: tuple[str, ...] = ()  # extra features, e.g. ("ringbuf",)


@dataclass(frozen=True)
class Label:
    """A metric label taken from a map key field through a named decoder."""
    name: str
    field: str  # key struct field, or "" for a scalar key
    decoder: str = "int"


@dataclass(frozen=True)
class Metric:
    """A BPF map served as a Prometheus metric.

    kind: counter | gauge | histogram. For histograms the key has a `slot`
    field (or is the slot) holding log2 ("exp2") or linear buckets and
    `multiplier` converts a bucket bound to base units (1e-6: us -> s).
    value_field picks one field of a struct value; per-CPU values are summed.
    """
    name: str
    help: str
    map: str
    kind: str = "counter"
    labels: tuple[Label, ...] = ()
    value_field: str = ""
    buckets: str = ""  # "exp2" | "linear" for histograms
    bucket_field: str = "slot"
    bucket_width: int = 1  # linear buckets only
    multiplier: float = 1.0
    sum_map: str = ""  # optional map holding the histogram's _sum (same labels)

    def __post_init__(self):
        if self.kind not in ("counter", "gauge", "histogram"):
            raise ValueError(f"metric {self.name}: unknown kind {self.kind!r}")
        if self.kind == "histogram" and self.buckets not in ("exp2", "linear"):
            raise ValueError(f"metric {self.name}: histogram needs buckets exp2|linear")


@dataclass(frozen=True)
class TracerSpec:
    """Everything about a tracer that is not output formatting."""
    name: str
    summary: str
    c_file: str  # in bpf_c/
    alternatives: tuple[Alternative, ...]
    metrics: tuple[Metric, ...] = ()
    events_map: str = ""  # ring buffer the CLI streams (runner.stream_events), if an event tracer
    examples: tuple[str, ...] = ()
    # The exporter runs a tracer with these -D defines (it never opens ring
    # buffers, so event tracers count instead: COUNT_ONLY), without the
    # hooks marked cli_only and, when exporter_default, among its default
    # tracers: low overhead, bounded series.
    exporter_defines: dict[str, int] = field(default_factory=dict)
    exporter_default: bool = False

    def cli_only_hooks(self) -> set[str]:
        """Entry points the exporter does not attach."""
        return {h.fn for alt in self.alternatives for h in alt.hooks if h.cli_only}

    def alternative(self, name: str) -> Alternative:
        for alt in self.alternatives:
            if alt.name == name:
                return alt
        known = ", ".join(a.name for a in self.alternatives)
        raise KeyError(f"{self.name} has no hook alternative {name!r} (known: {known})")


class UsageError(Exception):
    """Bad input: the runner prints `bpfwatch <tracer>: <message>` once and exits 2."""


@dataclass(frozen=True)
class Setup:
    """What a run loads: the spec (hooks may be resolved per run), the -D
    integers, entry points not to attach, and custom attachers by hook kind."""
    spec: TracerSpec
    defines: dict[str, int] = field(default_factory=dict)
    skip: frozenset[str] = frozenset()
    attachers: dict | None = None


class Tracer:
    """The tracer contract. The runner (and the exporter, with default
    arguments) calls add_positionals/add_arguments, then setup(args), then
    run(session, args). One instance per run: per-run state lives on it.
    Bad input raises UsageError; nothing here may exit the process."""
    spec: TracerSpec
    interval = False  # summary tracers take [interval [count]]
    process_filters = True  # -p/--comm; False (not offered) where no process is current
    duration_letter = True  # -d for --duration; False where bcc's namesake gives -d another meaning

    def add_positionals(self, parser) -> None:
        """Positionals before [interval [count]] (an interface, a pattern)."""

    def add_arguments(self, parser) -> None:
        """Options of this tracer, besides the shared ones."""

    def defines(self, args) -> dict[str, int]:
        return {}

    def skip_hooks(self, args) -> set[str]:
        """Entry points not to attach for these arguments."""
        return set()

    def attachers(self, args) -> dict | None:
        """hook kind -> attach(session, hook), for hooks BCC cannot attach."""
        return None

    def session_spec(self, args) -> TracerSpec:
        """The spec to load: SPEC, or one with hooks resolved at run time."""
        return self.spec

    def setup(self, args) -> Setup:
        defines = self.defines(args)
        spec = self.session_spec(args)
        return Setup(spec, defines, frozenset(self.skip_hooks(args)), self.attachers(args))

    def run(self, session, args) -> int:
        raise NotImplementedError

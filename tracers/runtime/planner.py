"""Pick the first hook alternative of a tracer that works on this kernel."""
from __future__ import annotations

from dataclasses import dataclass, field

from tracers.runtime import btf as btf_reader
from tracers.runtime import machine, privileges
from tracers.runtime.errors import NoUsableHook
from tracers.spec import Alternative, Hook, TracerSpec

# Which probed feature each hook kind needs.
FEATURE_OF = {
    "tracepoint": "tracepoint", "raw_tracepoint": "raw_tracepoint",
    "kprobe": "kprobe", "kretprobe": "kretprobe", "fentry": "fentry", "fexit": "fentry",
    "uprobe": "uprobe", "uretprobe": "uprobe", "perf_event": "perf_event",
    "tc": "tc", "socket_filter": "socket_filter", "xdp": "xdp", "lsm": "lsm",
}


@dataclass
class Plan:
    spec: TracerSpec
    alternative: Alternative | None
    offsets: dict[str, int] = field(default_factory=dict)
    rejected: list[tuple[str, str]] = field(default_factory=list)  # (alternative, why)

    @property
    def usable(self) -> bool:
        return self.alternative is not None

    def why_not(self) -> str:
        reasons = "; ".join(f"{name}: {why}" for name, why in self.rejected)
        return f"{self.spec.name}: no usable hook on this kernel ({reasons})"


def resolve_target(hook: Hook) -> str:
    if hook.kind in ("kprobe", "kretprobe") and hook.target.startswith("syscall:"):
        return machine.syscall_symbol(hook.target.split(":", 1)[1])
    return hook.target


def hook_problem(hook: Hook, probe) -> str | None:
    """Why this hook cannot work here, or None."""
    feature = probe.usable(FEATURE_OF[hook.kind])
    if not feature.available:
        return f"{hook.kind} unavailable ({feature.detail})"
    if hook.kind == "tracepoint" and not machine.tracepoint_exists(hook.target):
        return f"tracepoint {hook.target} does not exist"
    if hook.kind == "raw_tracepoint" and not machine.raw_tracepoint_exists(hook.target):
        return f"raw tracepoint {hook.target} does not exist"
    if hook.kind in ("kprobe", "kretprobe"):
        ok, why = machine.kernel_function_traceable(resolve_target(hook))
        if not ok:
            return why
    if hook.kind in ("fentry", "fexit"):
        try:
            if not btf_reader.BTF.load().has_function(hook.target):
                return f"{hook.target} not in kernel BTF"
        except btf_reader.BTFUnavailable as exc:
            return str(exc)
    return None


def resolve_offsets(alt: Alternative, probe, offsets_from: str) -> dict[str, int]:
    """BTF offsets for struct-reading probes, as -D defines ({}: the C takes
    offsetof() from kernel headers).

    offsets_from: "auto" (BTF; matching headers only for a field BTF lacks),
    "btf" or "headers". BTF first: without the struct headers BCC compiles
    about 4x faster, and the VM tier checks both give the same offsets.
    """
    if not alt.btf_fields or offsets_from == "headers":
        return {}
    try:
        return btf_reader.resolve_offsets(alt.btf_fields)
    except (btf_reader.FieldNotFound, btf_reader.BTFUnavailable):
        if offsets_from == "auto" and probe.headers.mode == "matching":
            return {}
        raise


def plan(spec: TracerSpec, probe, force: str | None = None, offsets_from: str = "auto") -> Plan:
    result = Plan(spec, None)
    candidates = [spec.alternative(force)] if force else list(spec.alternatives)
    privileges.require_for_alternatives(candidates, spec.name)  # planning reads tracefs
    for alt in candidates:
        problems = [p for h in alt.hooks if not h.optional for p in [hook_problem(h, probe)] if p]
        problems += [f"{n} unavailable ({probe.usable(n).detail})"
                     for n in alt.needs if not probe.usable(n).available]
        if not problems:
            try:
                result.offsets = resolve_offsets(alt, probe, offsets_from)
            except (btf_reader.FieldNotFound, btf_reader.BTFUnavailable) as exc:
                problems.append(str(exc))
        if problems:
            result.rejected.append((alt.name, problems[0]))
            continue
        result.alternative = alt
        return result
    return result


def require(spec: TracerSpec, probe, force: str | None = None, offsets_from: str = "auto") -> Plan:
    result = plan(spec, probe, force, offsets_from)
    if not result.usable:
        raise NoUsableHook(result.why_not())
    return result

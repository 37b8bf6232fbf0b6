"""Shared by the sched_switch tracers (cpudist, offcputime)."""
from tracers.spec import Alternative, Hook

# The tracepoint carries pids; the raw tracepoint hands task_struct
# pointers, read through BTF offsets.
SCHED_SWITCH_ALTERNATIVES = (
    Alternative("tracepoint", (
        Hook("tracepoint", "sched:sched_switch", "on_sched_switch"),
    ), define="HOOK_TRACEPOINT"),
    Alternative("raw_tracepoint", (
        Hook("raw_tracepoint", "sched_switch", "on_sched_switch"),
    ), define="HOOK_RAW_TRACEPOINT", btf_fields={"OFF_TASK_PID": ("task_struct", "pid")}),
)

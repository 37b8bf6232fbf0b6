"""Self-telemetry every tracer keeps in the kernel (see bpf_c/bpfwatch.h)."""
from __future__ import annotations

# Indexes of the bpfwatch_stats per-CPU array; keep in step with bpfwatch.h.
STAT_NAMES = ("events_dropped", "map_update_failures")


def read_stats(bpf) -> dict[str, int]:
    try:
        table = bpf["bpfwatch_stats"]
    except KeyError:
        return {name: 0 for name in STAT_NAMES}
    out = {}
    for index, name in enumerate(STAT_NAMES):
        values = table[table.Key(index)]
        out[name] = sum(int(v) for v in values)
    return out

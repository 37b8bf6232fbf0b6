"""Self-telemetry every tracer keeps in the kernel (see bpf_c/bpfwatch.h)."""
from __future__ import annotations

# Indexes of the bpfwatch_stats per-CPU array; every program is compiled
# with these defines (bpfwatch.h has no defaults of its own).
STAT_NAMES = ("events_dropped", "map_update_failures")
STAT_DEFINES = {"BPFWATCH_STATS": len(STAT_NAMES),
                **{f"BPFWATCH_STAT_{name.upper()}": i for i, name in enumerate(STAT_NAMES)}}


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

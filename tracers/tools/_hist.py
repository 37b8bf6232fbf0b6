"""The latency histogram runqlat and cpudist declare: one, or one per pid/tid."""
from __future__ import annotations

from tracers import containers
from tracers.mapdata import NUMBER
from tracers.summary import Histogram, label


def latency_histogram(args, empty: str) -> Histogram:
    unit = "msecs" if args.milliseconds else "usecs"
    id_name = "pid" if args.pids else "tid" if getattr(args, "tids", False) else None
    if getattr(args, "per_container", False):
        return Histogram("dist_cgroup", unit, by=(label("container", "CONTAINER", 0, "cgroup_id", "container"),),
                         slot_field="slot", empty=empty, decoders=containers.short_id_decoders())
    if id_name is None:
        return Histogram("dist", unit, empty=empty)
    return Histogram("dist_pid", unit, by=(label(id_name, id_name, 0, "pid", NUMBER),),
                     slot_field="slot", empty=empty)

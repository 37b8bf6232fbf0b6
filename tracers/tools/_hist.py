"""What runqlat and cpudist share: the histogram (one, or one per pid, tid
or container), its unit and breakdown options and their -D defines."""
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


def add_arguments(parser, threads: bool) -> None:
    parser.add_argument("-m", "--milliseconds", action="store_true", help="histogram in msecs")
    per = parser.add_mutually_exclusive_group()
    per.add_argument("-P", "--pids", action="store_true", help="one histogram per process (TGID)")
    if threads:
        per.add_argument("-L", "--tids", action="store_true", help="one histogram per thread (TID)")
    per.add_argument("--per-container", action="store_true",
                     help="one histogram per container (host tasks: one '-' histogram)")


def defines(args) -> dict[str, int]:
    out = {"UNIT_NS": 1_000_000 if args.milliseconds else 1000}
    for wanted, name in ((args.pids, "PER_PROCESS"), (getattr(args, "tids", False), "PER_THREAD"),
                         (args.per_container, "PER_CGROUP")):
        if wanted:
            out[name] = 1
    return out

"""Stack-trace tracers (offcputime, profile): options, reading stack maps, folded and SVG output."""
from __future__ import annotations

import sys
from dataclasses import replace

from tracers import containers, decoders, runner
from tracers.mapdata import number
from tracers.output import flamegraph
from tracers.output.files import open_output


# include/linux/sched.h: task_struct.flags of kernel threads
PF_KTHREAD = 0x00200000


def add_stack_arguments(parser, threads: bool) -> None:
    """bcc's letters: -U/-K user or kernel stacks; with threads (bcc's
    offcputime, not its profile), -u/-k user or kernel threads."""
    if threads:
        which = parser.add_mutually_exclusive_group()
        which.add_argument("-u", "--user-threads-only", action="store_true",
                           help="user threads only (no kernel threads)")
        which.add_argument("-k", "--kernel-threads-only", action="store_true",
                           help="kernel threads only")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("-U", "--user-stacks-only", action="store_true", help="user stacks only")
    which.add_argument("-K", "--kernel-stacks-only", action="store_true", help="kernel stacks only")
    parser.add_argument("--svg", metavar="FILE", help="also write a flame graph SVG to FILE")
    parser.add_argument("--containers", action="store_true",
                        help="the container's short id as the first frame (JSON always has it)")


def with_task_flags(alternatives):
    """The alternatives, each also resolving task_struct.flags from BTF (-u/-k)."""
    return tuple(replace(a, btf_fields={**a.btf_fields, "OFF_TASK_FLAGS": ("task_struct", "flags")})
                 for a in alternatives)


def thread_defines(args) -> dict[str, int]:
    if args.user_threads_only:
        return {"USER_THREADS_ONLY": 1, "BPFWATCH_PF_KTHREAD": PF_KTHREAD}
    if args.kernel_threads_only:
        return {"KERNEL_THREADS_ONLY": 1, "BPFWATCH_PF_KTHREAD": PF_KTHREAD}
    return {}


def open_svg(args):
    """The --svg file, opened before tracing (a bad path is one line, not a
    traceback after the trace), or None."""
    return open_output("--svg", args.svg, "w") if args.svg is not None else None


def stack_defines(args, prog: str) -> dict[str, int]:
    if args.user_stacks_only:
        return {"USER_STACKS_ONLY": 1}
    if args.kernel_stacks_only:
        return {"KERNEL_STACKS_ONLY": 1}
    return {}


def stack_rows(session, map_name: str, scale: float = 1.0) -> tuple[list[dict], int]:
    """Symbolised rows of a (cgroup_id, tgid, user_stack, kernel_stack, comm) -> value
    map, biggest first, and how many stacks were missing."""
    from tracers.runtime.stacks import Symbolizer
    sym = Symbolizer(session.bpf)
    resolver = containers.Resolver()
    merged: dict[tuple, dict] = {}
    for key, value in session.read_map(map_name):  # batched
        comm = decoders.comm(decoders.raw_field(key, "comm"))
        user = sym.user(key.user_stack, key.tgid) if key.user_stack != -1 else []
        kernel = sym.kernel(key.kernel_stack) if key.kernel_stack != -1 else []
        ident = (key.tgid, key.cgroup_id, comm, tuple(user), tuple(kernel))  # ids differ, names may not
        row = merged.setdefault(ident, {"pid": key.tgid, "comm": comm,
                                        **containers.record_fields(resolver, key.cgroup_id),
                                        "user_stack": user, "kernel_stack": kernel, "value": 0})
        row["value"] += number(value)
    rows = list(merged.values())
    for row in rows:
        row["value"] = int(row["value"] * scale)
    rows = [r for r in rows if r["value"] > 0]
    rows.sort(key=lambda r: (-r["value"], r["comm"], r["pid"]))
    return rows, sym.missing


def frames(row: dict, with_container: bool = False) -> list[str]:
    where = [row["container"]["id"][:12] if row["container"] else "host"] if with_container else []
    return [*where, row["comm"], *row["user_stack"], *row["kernel_stack"]]


def report(session, args, rows: list[dict], missing: int, unit: str, title: str, svg=None) -> None:
    """Folded lines (or JSON objects), then the SVG if asked for."""
    if args.json:
        for row in rows:
            runner.emit({**row, "unit": unit})
    else:  # processes with the same comm and stacks share a folded line
        folded: dict[str, int] = {}
        for row in rows:
            line = flamegraph.folded_line(frames(row, args.containers), 0).rsplit(" ", 1)[0]
            folded[line] = folded.get(line, 0) + row["value"]
        for line, value in sorted(folded.items(), key=lambda kv: (-kv[1], kv[0])):
            print(f"{line} {value}")
    failures = session.stats()["map_update_failures"]
    if args.json:
        runner.emit({"summary": {"stacks": len(rows), "total": sum(r["value"] for r in rows), "unit": unit,
                                 "missing_stacks": missing, "map_update_failures": failures}})
    if missing or failures:
        print(f"bpfwatch {session.spec.name}: {missing} stacks missing, {failures} map updates failed "
              "(maps full?)", file=sys.stderr)
    if svg is not None:
        with svg:
            svg.write(flamegraph.render_svg([(frames(r, args.containers), r["value"]) for r in rows],
                                            title=title, unit=unit))
        print(f"bpfwatch {session.spec.name}: flame graph written to {args.svg}", file=sys.stderr)
    sys.stdout.flush()

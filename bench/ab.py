"""Before/after: one bpfwatch command from a git ref and from the working tree.

    .venv/bin/python -m bench.ab REF [--after REF2] [--rounds N] [--iterations N]
                                 [--events exec|open] -- TRACER [ARGS...]

The ref (and --after, else the working tree) is exported (git archive) into a
temporary directory and run from there with the same interpreter, the two
interleaved round by round, after one warm-up start each (.pyc files). A ref
may also be a directory (a copy of a tree with uncommitted work), used as is.
Reported per side: start-up (spawn to readiness line), ns added per
open+close iteration of the C workload, and the kernel's run time of the
tracer's programs per event (BPF_ENABLE_STATS), and its peak RSS (VmHWM).
With --events, an event tracer's CPU time per streamed event instead, under
an exec storm (execs one at a time) or an open storm (paced opens).
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import harness as c


def export(ref: str) -> str:
    if Path(ref).is_dir():
        return ref
    out = tempfile.mkdtemp(prefix="bpfwatch-ab-")
    archive = subprocess.run(["git", "archive", ref], cwd=c.ROOT, capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", out], input=archive, check=True)
    return out


def measure_events(tree: str, argv: list[str], storm: str, count: int) -> dict:
    """CPU time per streamed event (bench.streaming's storms), and start-up."""
    from bench import streaming
    workload = (["exec", str(count), streaming.exec_target(), *streaming.EXEC_ARGS] if storm == "exec"
                else ["open", str(count), str(streaming.OPEN_RATE)])
    match = "bpfbench_true" if storm == "exec" else "bpfbench_wl"
    row = streaming._cpu_per_event("", [*c.BPFWATCH, *argv], c.READY_BPFWATCH, match, workload, count,
                                   cwd=tree)
    if "error" in row:
        raise RuntimeError(row["error"])
    return {"ready_s": row["ready_s"], "us_per_event": row["cpu_us_per_event"],
            "delivered": row["received"] / count, "hwm_mib": row["hwm_mib"]}


def measure(tree: str, argv: list[str], iterations: int) -> dict:
    with c.Tool([*c.BPFWATCH, *argv], c.READY_BPFWATCH, cwd=tree) as tool:
        ready = tool.ready_after
        ns = float(c.run_workload("open", str(iterations)))
        bpf = c.prog_ns_per_run(tool.proc.pid)
        hwm = next(int(l.split()[1]) / 1024 for l in open(f"/proc/{tool.proc.pid}/status")
                   if l.startswith("VmHWM:"))
    return {"ready_s": ready, "ns_per_iteration": ns, "bpf_ns": bpf, "hwm_mib": hwm}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ab", description=__doc__.split("\n")[0])
    parser.add_argument("ref")
    parser.add_argument("--after", help="a second ref instead of the working tree")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--iterations", type=int, default=300_000)
    parser.add_argument("--events", choices=("exec", "open"), help="CPU per event under this storm")
    argv = sys.argv[1:] if argv is None else list(argv)
    if "--" not in argv:
        parser.error("give the tracer command after --")
    split = argv.index("--")
    args, command = parser.parse_args(argv[:split]), argv[split + 1:]
    c.prepare_machine()
    after = args.after or "working tree"
    trees = {args.ref: export(args.ref), after: export(args.after) if args.after else str(c.ROOT)}
    if args.events:
        return events_main(args, command, trees, after)
    for tree in trees.values():
        measure(tree, command, 1000)
    got = {name: [] for name in trees}
    bare = []
    with c.bpf_run_stats():
        for r in range(args.rounds):
            bare.append(float(c.run_workload("open", str(args.iterations))))
            for name, tree in trees.items():
                got[name].append(measure(tree, command, args.iterations))
            print(f"round {r + 1}/{args.rounds}", file=sys.stderr, flush=True)
    rows, summary = [], {}
    for name, runs in got.items():
        s = {"ready_s": c.median([x["ready_s"] for x in runs]),
             "added_ns": c.median([x["ns_per_iteration"] - b for x, b in zip(runs, bare)]),
             "bpf_ns": c.median([x["bpf_ns"] for x in runs]), "hwm_mib": c.median([x["hwm_mib"] for x in runs])}
        summary[name] = s
        rows.append([name, f"{s['ready_s']:.2f}", c.fmt_num(s["added_ns"]), c.fmt_num(s["bpf_ns"]),
                     c.fmt_num(s["hwm_mib"])])
    a, b = summary[args.ref], summary[after]
    rows.append(["after / before", c.ratio(b["ready_s"], a["ready_s"]), c.ratio(b["added_ns"], a["added_ns"]),
                 c.ratio(b["bpf_ns"], a["bpf_ns"]), c.ratio(b["hwm_mib"], a["hwm_mib"])])
    print(f"bpfwatch {' '.join(command)}: median of {args.rounds} interleaved rounds, bare open+close "
          f"{c.median(bare):.0f} ns/iteration\n")
    print(c.table(["tree", "start-up (s)", "ns added per iteration", "ns in BPF per event",
                   "peak RSS (MiB)"], rows))
    return 0


def events_main(args, command, trees: dict, after: str) -> int:
    count = 1000 if args.events == "exec" else 20_000
    for tree in trees.values():
        measure_events(tree, command, args.events, 100)  # warm-up (.pyc)
    got = {name: [] for name in trees}
    for r in range(args.rounds):
        for name, tree in trees.items():
            got[name].append(measure_events(tree, command, args.events, count))
        print(f"round {r + 1}/{args.rounds}", file=sys.stderr, flush=True)
    rows, summary = [], {}
    for name, runs in got.items():
        s = {k: c.median([x[k] for x in runs]) for k in ("ready_s", "us_per_event", "delivered", "hwm_mib")}
        summary[name] = s
        rows.append([name, f"{s['ready_s']:.2f}", c.fmt_num(s["us_per_event"]), f"{s['delivered']:.0%}",
                     c.fmt_num(s["hwm_mib"])])
    a, b = summary[args.ref], summary[after]
    rows.append(["after / before", c.ratio(b["ready_s"], a["ready_s"]), c.ratio(b["us_per_event"], a["us_per_event"]),
                 "", c.ratio(b["hwm_mib"], a["hwm_mib"])])
    print(f"bpfwatch {' '.join(command)} under an {args.events} storm of {count}: median of {args.rounds} "
          f"interleaved rounds, load average {os.getloadavg()[0]:.2f}\n")
    print(c.table(["tree", "start-up (s)", "tracer CPU us/event", "delivered", "peak RSS (MiB)"], rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

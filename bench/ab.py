"""Before/after: one bpfwatch command from a git ref and from the working tree.

    .venv/bin/python -m bench.ab REF [--after REF2] [--rounds N] [--iterations N] -- TRACER [ARGS...]

The ref (and --after, else the working tree) is exported (git archive) into a
temporary directory and run from there with the same interpreter, the two
interleaved round by round, after one warm-up start each (.pyc files). Reported per side: start-up (spawn to readiness line), ns added per
open+close iteration of the C workload, and the kernel's run time of the
tracer's programs per event (BPF_ENABLE_STATS), and its peak RSS (VmHWM).
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import common as c


def export(ref: str) -> str:
    out = tempfile.mkdtemp(prefix="bpfwatch-ab-")
    archive = subprocess.run(["git", "archive", ref], cwd=c.ROOT, capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", out], input=archive, check=True)
    return out


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
    argv = sys.argv[1:] if argv is None else list(argv)
    if "--" not in argv:
        parser.error("give the tracer command after --")
    split = argv.index("--")
    args, command = parser.parse_args(argv[:split]), argv[split + 1:]
    c.prepare_machine()
    after = args.after or "working tree"
    trees = {args.ref: export(args.ref), after: export(args.after) if args.after else str(c.ROOT)}
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


if __name__ == "__main__":
    raise SystemExit(main())

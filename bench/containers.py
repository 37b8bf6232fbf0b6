"""Container identity cost: the cgroup id in opensnoop's records (main before
and after it came), the in-kernel --cgroup filter (the root cgroup: every open
passes, so the check is what is measured), syscount --per-container.

    .venv/bin/python -m bench.containers     # root; ~3 minutes

Interleaved rounds, medians, as bench/overhead.py and bench/ab.py do.
"""
from __future__ import annotations

import sys

from bench import harness as c
from bench.ab import export

BEFORE = "27f83e7"  # main just before the cgroup id was added to records

ROUNDS, N = 5, 300_000


def main() -> int:
    before = export(BEFORE)
    configs = [
        ("opensnoop --json (before: no cgroup id)", before, ["opensnoop", "--json"], 1),
        ("opensnoop --json (cgroup id per record)", str(c.ROOT), ["opensnoop", "--json"], 1),
        ("opensnoop --json --cgroup / (filter, all pass)", str(c.ROOT), ["opensnoop", "--json", "--cgroup", "/"], 1),
        ("syscount", str(c.ROOT), ["syscount"], 2),
        ("syscount --per-container", str(c.ROOT), ["syscount", "--per-container"], 2),
    ]
    c.prepare_machine()
    for _, tree, argv, _ in configs:  # warm-up (.pyc)
        with c.Tool([*c.BPFWATCH, *argv], c.READY_BPFWATCH, cwd=tree):
            c.run_workload("open", "1000")
    got = {name: ([], []) for name, *_ in configs}
    bare = []
    with c.bpf_run_stats():
        for r in range(ROUNDS):
            bare.append(float(c.run_workload("open", str(N))))
            for name, tree, argv, per in configs:
                with c.Tool([*c.BPFWATCH, *argv], c.READY_BPFWATCH, cwd=tree) as tool:
                    ns = float(c.run_workload("open", str(N)))
                    bpf = c.prog_ns_per_run(tool.proc.pid)
                got[name][0].append((ns - bare[-1]) / per)
                got[name][1].append(bpf)
            print(f"round {r + 1}/{ROUNDS}", file=sys.stderr, flush=True)
    rows = [[name, c.fmt_num(c.median(a)), c.fmt_num(c.median([x for x in b if x is not None]))]
            for name, (a, b) in got.items()]
    print(f"median of {ROUNDS} interleaved rounds, {N} open+close iterations, "
          f"bare {c.median(bare):.0f} ns/iteration")
    print(c.table(["tool", "ns added per event", "ns in BPF per event"], rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

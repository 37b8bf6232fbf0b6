"""guard's cost: per open and per exec, with the default rules, with no rule
of that kind, and bpftrace doing one such match. `python -m bench.guard`.

The workloads match no rule (open+close of /dev/null, exec of /bin/true from
the repository): what every event on a machine pays. Two measures, as in
table 1: CPU time added to the workload per event (noisy), and the kernel's
own run time of the tool's programs per run (BPF_ENABLE_STATS).
"""
from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import harness as c

DEFAULT = [*c.BPFWATCH, "guard", "--json"]
PTRACE_ONLY = '[[rules]]\nname = "p"\nkind = "ptrace"\nseverity = "low"\naction = "alert"\n'
# The same match as write_under_etc, one prefix, in bpftrace.
BT_OPEN = ('tracepoint:syscalls:sys_enter_openat /(args->flags & 3) && '
           'strncmp(str(args->filename), "/etc/", 5) == 0/ { printf("%d %s\\n", pid, str(args->filename)); }')
BT_EXEC = ('tracepoint:sched:sched_process_exec /strncmp(str(args->filename), "/tmp/", 5) == 0/ '
           '{ printf("%d %s\\n", pid, str(args->filename)); }')


def configs(rules_dir: Path) -> list[tuple[str, str, list[str], str]]:
    only_ptrace = rules_dir / "ptrace.toml"
    only_ptrace.write_text(PTRACE_ONLY)
    return [
        ("open", "bpfwatch guard, default rules", DEFAULT, c.READY_BPFWATCH),
        ("open", "bpfwatch guard, no open rule", [*c.BPFWATCH, "guard", "--rules", str(only_ptrace)],
         c.READY_BPFWATCH),
        ("open", "bpftrace, one /etc/ write match", ["bpftrace", "-e", BT_OPEN], c.READY_BPFTRACE),
        ("exec", "bpfwatch guard, default rules", DEFAULT, c.READY_BPFWATCH),
        ("exec", "bpftrace, one /tmp/ exec match", ["bpftrace", "-e", BT_EXEC], c.READY_BPFTRACE),
    ]


def run_times(pid: int) -> dict[str, tuple[int, int]]:
    """name -> (run_time_ns, run_cnt) of the programs whose fds `pid` holds."""
    ids = set()
    for fd in Path(f"/proc/{pid}/fdinfo").iterdir():
        try:
            ids |= {int(line.split()[1]) for line in fd.read_text().splitlines() if line.startswith("prog_id:")}
        except (OSError, ValueError):
            pass
    out = subprocess.run(["bpftool", "prog", "show", "--json"], capture_output=True, text=True).stdout
    return {f"{p.get('name', '?')}#{p['id']}": (p.get("run_time_ns", 0), p.get("run_cnt", 0))
            for p in json.loads(out or "[]") if p["id"] in ids}


def bpf_ns_per_event(tool, kind: str, n: int) -> tuple[float, dict]:
    """All the tool's programs' run time during the workload, per event, and by program."""
    before = run_times(tool.proc.pid)
    workload(kind, n)
    after = run_times(tool.proc.pid)
    delta = {name: (after[name][0] - before.get(name, (0, 0))[0], after[name][1] - before.get(name, (0, 0))[1])
             for name in after}
    by_program = {name: round(ns / n, 1) for name, (ns, runs) in delta.items() if runs}
    return sum(ns for ns, _ in delta.values()) / n, by_program


def workload(kind: str, n: int) -> float:
    """ns of workload per event: CPU time per open, wall time per exec."""
    if kind == "open":
        return float(c.run_workload("open", str(n)))
    execs, seconds = c.run_workload("exec", str(n), "/bin/true").split()
    return float(seconds) / int(execs) * 1e9


def run(rounds: int = 3, opens: int = 300_000, execs: int = 2000, log=print) -> dict:
    rows = []
    with tempfile.TemporaryDirectory(prefix="bpfwatch-bench-guard-") as tmp:
        cfgs = configs(Path(tmp))
        for kind, n in (("open", opens), ("exec", execs)):
            bare, added = [], {label: [] for k, label, *_ in cfgs if k == kind}
            for r in range(rounds):
                bare.append(workload(kind, n))
                for k, label, argv, ready in cfgs:
                    if k != kind:
                        continue
                    with c.Tool(argv, ready):
                        added[label].append(workload(kind, n) - bare[-1])
                log(f"  guard {kind} round {r + 1}/{rounds}: bare {bare[-1]:.0f} ns")
            in_bpf = {}
            with c.bpf_run_stats():
                for k, label, argv, ready in cfgs:
                    if k == kind:
                        with c.Tool(argv, ready) as tool:
                            in_bpf[label] = bpf_ns_per_event(tool, kind, n // 2)
            for label in added:
                ns, by_program = in_bpf.get(label, (None, {}))
                rows.append({"event": kind, "tool": label, "bare_ns": c.median(bare),
                             "added_ns": c.median(added[label]), "bpf_ns_per_event": ns,
                             "bpf_ns_per_event_by_program": by_program})
    return {"rounds": rounds, "opens": opens, "execs": execs, "rows": rows}


def render(result: dict) -> str:
    lines = [[r["event"], r["tool"], c.fmt_num(r["bare_ns"]), c.fmt_num(r["added_ns"]),
              c.fmt_num(r["bpf_ns_per_event"]),
              ", ".join(f"{k.split('#')[0]} {v}" for k, v in sorted(r["bpf_ns_per_event_by_program"].items()))]
             for r in result["rows"]]
    return (f"guard: {result['opens']} opens of /dev/null (CPU time per open) and {result['execs']} "
            f"execs of /bin/true (wall time per exec), median of {result['rounds']} interleaved rounds; "
            "no rule matches. `ns in BPF per event`: the run time (BPF_ENABLE_STATS) of all the tool's "
            "programs during the workload, divided by its events (an open+close is 2 syscalls: "
            "guard's raw sys_enter hook for module loads, on this kernel, runs for both).\n\n"
            + c.table(["event", "tool", "bare ns per event", "ns added per event", "ns in BPF per event",
                       "by program"], lines))


if __name__ == "__main__":
    c.prepare_machine()
    started = time.monotonic()
    result = run(log=lambda m: print(m, file=sys.stderr, flush=True))
    print(render(result))
    print(json.dumps(result), file=sys.stderr)
    print(f"\n({time.monotonic() - started:.0f} s)", file=sys.stderr)

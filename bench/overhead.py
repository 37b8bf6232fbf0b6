"""Table 1: probe overhead per event on an open+close loop.

Each round runs the bare workload, then each tracer in turn (attached, then
the workload, then stopped): interleaved, so a slow minute of the machine
hits every column alike. Reported: the median over rounds of (traced - bare
of the same round), per event.
"""
from __future__ import annotations

from bench import harness as c

BT_ENTER = "tracepoint:raw_syscalls:sys_enter"
# (task, tool label, argv, readiness, events per loop iteration)
CONFIGS = [
    ("count per syscall", "bpfwatch syscount", [*c.BPFWATCH, "syscount"], c.READY_BPFWATCH, 2),
    ("count per syscall", "bpftrace @[args->id]=count()",
     ["bpftrace", "-e", BT_ENTER + " { @[args->id] = count(); }"], c.READY_BPFTRACE, 2),
    ("count per syscall", "syscount-bpfcc", ["syscount-bpfcc"], c.READY_BCC, 2),
    ("count per comm", "bpftrace @[comm]=count()",
     ["bpftrace", "-e", BT_ENTER + " { @[comm] = count(); }"], c.READY_BPFTRACE, 2),
    ("count + latency", "bpfwatch syscount -L", [*c.BPFWATCH, "syscount", "-L"], c.READY_BPFWATCH, 2),
    ("count + latency", "bpftrace start/sum/count",
     ["bpftrace", "-e", BT_ENTER + " { @s[tid] = nsecs; } tracepoint:raw_syscalls:sys_exit "
      "/@s[tid]/ { @ns[args->id] = sum(nsecs - @s[tid]); @n[args->id] = count(); delete(@s[tid]); }"],
     c.READY_BPFTRACE, 2),
    ("count + latency", "syscount-bpfcc -L", ["syscount-bpfcc", "-L"], c.READY_BCC, 2),
    ("count per process", "bpfwatch syscount -P", [*c.BPFWATCH, "syscount", "-P"], c.READY_BPFWATCH, 2),
    ("count per process", "bpftrace @[pid]=count()",
     ["bpftrace", "-e", BT_ENTER + " { @[pid] = count(); }"], c.READY_BPFTRACE, 2),
    ("count per process", "syscount-bpfcc -P", ["syscount-bpfcc", "-P"], c.READY_BCC, 2),
    ("count per container", "bpfwatch syscount --per-container", [*c.BPFWATCH, "syscount", "--per-container"],
     c.READY_BPFWATCH, 2),
    ("stream each open", "bpfwatch opensnoop", [*c.BPFWATCH, "opensnoop", "--json"], c.READY_BPFWATCH, 1),
    # the in-kernel cgroup filter, set to the root cgroup: every open passes, the check is the cost
    ("stream each open", "bpfwatch opensnoop --cgroup /", [*c.BPFWATCH, "opensnoop", "--json", "--cgroup", "/"],
     c.READY_BPFWATCH, 1),
    ("stream each open", "bpftrace opensnoop.bt-like",
     ["bpftrace", "-e", "tracepoint:syscalls:sys_enter_openat { @f[tid] = args->filename; } "
      "tracepoint:syscalls:sys_exit_openat /@f[tid]/ { printf(\"%d %s %d %s\\n\", pid, comm, "
      "args->ret, str(@f[tid])); delete(@f[tid]); }"], c.READY_BPFTRACE, 1),
    ("stream each open", "opensnoop-bpfcc", ["opensnoop-bpfcc"], c.READY_BCC, 1),
]


def bpf_time(failed: dict, iterations: int) -> dict[str, float]:
    """One more pass with the kernel's BPF run-time stats on: the time spent
    inside each tool's programs per event (enter + exit programs summed),
    free of the workload's timing noise. Not interleaved with the rounds:
    the stats cost a little on every program run."""
    out = {}
    with c.bpf_run_stats():
        for task, label, argv, ready, per_iter in CONFIGS:
            if label in failed:
                continue
            try:
                with c.Tool(argv, ready) as tool:
                    c.run_workload("open", str(iterations))
                    out[label] = c.prog_ns_per_run(tool.proc.pid)
            except RuntimeError:
                pass
    return out


def run(rounds: int = 5, iterations: int = 1_000_000, log=print) -> dict:
    bare: list[float] = []
    added: dict[str, list[float]] = {label: [] for _, label, *_ in CONFIGS}
    failed: dict[str, str] = {}
    for r in range(rounds):
        bare.append(float(c.run_workload("open", str(iterations))))
        for task, label, argv, ready, per_iter in CONFIGS:
            if label in failed:
                continue
            if argv[0] != c.BPFWATCH[0] and not c.tool_path(argv[0]):
                failed[label] = f"{argv[0]} not installed"
                continue
            try:
                with c.Tool(argv, ready):
                    ns = float(c.run_workload("open", str(iterations)))
            except RuntimeError as exc:
                failed[label] = str(exc)
                continue
            added[label].append((ns - bare[-1]) / per_iter)
        log(f"  overhead round {r + 1}/{rounds}: bare {bare[-1]:.0f} ns/iteration")
    in_bpf = bpf_time(failed, iterations // 5)
    log("  overhead: in-kernel program run time measured")
    rows = []
    for task, label, argv, ready, per_iter in CONFIGS:
        rows.append({"task": task, "tool": label, "events_per_iteration": per_iter,
                     "added_ns_per_event": c.median(added[label]),
                     "bpf_ns_per_event": in_bpf.get(label),
                     "rounds_ns": [round(v, 1) for v in added[label]],
                     "error": failed.get(label)})
    return {"iterations": iterations, "rounds": rounds, "bare_ns_per_iteration": c.median(bare),
            "bare_rounds": bare, "rows": rows}


def render(result: dict) -> str:
    by_task: dict[str, dict[str, float]] = {}
    for row in result["rows"]:
        by_task.setdefault(row["task"], {})[row["tool"]] = row["added_ns_per_event"]
    lines = []
    for row in result["rows"]:
        ours = next((v for k, v in by_task[row["task"]].items() if k.startswith("bpfwatch")), None)
        ours_bpf = next((r.get("bpf_ns_per_event") for r in result["rows"]
                         if r["task"] == row["task"] and r["tool"].startswith("bpfwatch")), None)
        is_ours = row["tool"].startswith("bpfwatch")
        lines.append([row["task"], row["tool"],
                      c.fmt_num(row["added_ns_per_event"]) if not row["error"] else "fails: " + row["error"],
                      "" if is_ours or row["error"] else c.ratio(ours, row["added_ns_per_event"]),
                      c.fmt_num(row.get("bpf_ns_per_event")),
                      "" if is_ours or row["error"] else c.ratio(ours_bpf, row.get("bpf_ns_per_event"))])
    head = (f"Probe overhead: open+close of /dev/null, {result['iterations']} iterations, CPU time "
            "of the workload (not wall time), bare "
            f"{result['bare_ns_per_iteration']:.0f} ns/iteration, median of {result['rounds']} "
            "interleaved rounds. Events: every syscall (2 per iteration) or each open (1).")
    head += (" `ns in BPF` is the kernel's own run-time statistic (BPF_ENABLE_STATS) for the tool's "
             "programs, summed over enter and exit: the least noisy column.")
    return head + "\n\n" + c.table(["task", "tool", "ns added per event", "bpfwatch / this",
                                     "ns in BPF per event", "bpfwatch / this (BPF)"], lines)

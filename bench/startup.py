"""Table 4: start-up (command to attached) and the exporter's peak memory.

Start-up is measured from spawning the command to its readiness line, for
every tracer `bpfwatch list` says is usable here, beside the bcc tool of
the same name and a bpftrace equivalent where one runs. Interleaved rounds,
median.
"""
from __future__ import annotations

import json
import re
import subprocess
import time
import urllib.request

from bench import harness as c

# Arguments some tracers need (bpfwatch, then the bcc tool of the same name).
EXTRA_ARGS = {"tctraffic": ["lo"], "sockfilter": ["-i", "lo"], "funccount": ["t:syscalls:sys_enter_getppid"],
              "funclatency": ["c:getppid"]}
BCC_ARGS = {"funccount": ["t:syscalls:sys_enter_getppid"], "funclatency": ["c:getppid"]}
# bcc tools whose first line is not "Tracing..."; profile prints its line
# before compiling, so it has no honest readiness line and is left out.
BCC_READY = {"tcplife": ("LADDR",)}
BCC_SKIP = {"profile": "prints its line before it compiles: no readiness to time"}
# bpftrace programs doing the same job (tracepoints only: no kprobes here).
BPFTRACE = {
    "syscount": "tracepoint:raw_syscalls:sys_enter { @[args->id] = count(); }",
    "execsnoop": "tracepoint:syscalls:sys_enter_execve { printf(\"%d %s\\n\", pid, str(args->filename)); }",
    "opensnoop": "tracepoint:syscalls:sys_enter_openat { @f[tid] = args->filename; } "
                 "tracepoint:syscalls:sys_exit_openat /@f[tid]/ { printf(\"%d %d %s\\n\", pid, "
                 "args->ret, str(@f[tid])); delete(@f[tid]); }",
    "runqlat": "tracepoint:sched:sched_wakeup { @q[args->pid] = nsecs; } tracepoint:sched:sched_switch "
               "{ if (@q[args->next_pid]) { @us = hist((nsecs - @q[args->next_pid]) / 1000); "
               "delete(@q[args->next_pid]); } }",
    "biolatency": "tracepoint:block:block_rq_issue { @s[args->dev, args->sector] = nsecs; } "
                  "tracepoint:block:block_rq_complete /@s[args->dev, args->sector]/ { @us = "
                  "hist((nsecs - @s[args->dev, args->sector]) / 1000); delete(@s[args->dev, args->sector]); }",
    "tcplife": "tracepoint:sock:inet_sock_set_state { @[args->newstate] = count(); }",
    "tcpretrans": "tracepoint:tcp:tcp_retransmit_skb { @[args->sport, args->dport] = count(); }",
    "skbdrop": "tracepoint:skb:kfree_skb { @[args->reason] = count(); }",
    "funccount": "tracepoint:syscalls:sys_enter_getppid { @ = count(); }",
    "profile": "profile:hz:49 { @[kstack, ustack, comm] = count(); }",
    "cpudist": "tracepoint:sched:sched_switch { @s[args->next_pid] = nsecs; if (@s[args->prev_pid]) "
               "{ @us = hist((nsecs - @s[args->prev_pid]) / 1000); } }",
}


def usable_tracers() -> list[str]:
    out = subprocess.run([*c.BPFWATCH, "list", "--json"], capture_output=True, text=True, cwd=c.ROOT)
    try:
        return [row["tracer"] for row in json.loads(out.stdout) if row["usable"]]
    except ValueError:
        return []


def _time(argv, ready) -> tuple[float | None, str | None]:
    try:
        with c.Tool(argv, ready) as tool:
            if argv[0] == "bpftrace":
                time.sleep(0.5)  # let it finish attaching (not timed) before Ctrl-C
            return tool.ready_after, None
    except RuntimeError as exc:
        return None, str(exc)


def exporter_memory(scrapes: int = 5) -> dict:
    """Peak RSS (VmHWM) of `bpfwatch exporter` with its default tracers."""
    with c.Tool([*c.BPFWATCH, "exporter", "--listen", "127.0.0.1:0"], c.READY_BPFWATCH, timeout=120) as tool:
        line = tool.head["err"].decode(errors="replace")
        port = re.search(r"127\.0\.0\.1:(\d+)/metrics", line)
        serving = re.search(r"Serving (\d+/\d+) tracers \(([^)]*)\)", line)
        sizes = []
        for _ in range(scrapes if port else 0):
            with urllib.request.urlopen(f"http://127.0.0.1:{port.group(1)}/metrics", timeout=30) as r:
                sizes.append(len(r.read()))
        status = open(f"/proc/{tool.proc.pid}/status").read()
        kb = {k: int(v.split()[0]) for k, v in re.findall(r"^(VmHWM|VmRSS):\s+(.*)$", status, re.M)}
        return {"ready_s": tool.ready_after, "tracers": serving.group(2) if serving else "",
                "attached": serving.group(1) if serving else "", "scrapes": len(sizes),
                "metrics_bytes": sizes[-1] if sizes else None,
                "vm_hwm_mib": kb.get("VmHWM", 0) / 1024, "vm_rss_mib": kb.get("VmRSS", 0) / 1024}


def run(rounds: int = 3, log=print) -> dict:
    tracers = usable_tracers()
    tools = []  # (tracer, kind, label, argv, ready)
    for name in tracers:
        tools.append((name, "bpfwatch", f"bpfwatch {name}", [*c.BPFWATCH, name, *EXTRA_ARGS.get(name, [])],
                      c.READY_BPFWATCH))
        if c.tool_path(f"{name}-bpfcc") and name not in BCC_SKIP:
            tools.append((name, "bcc", f"{name}-bpfcc", [f"{name}-bpfcc", *BCC_ARGS.get(name, [])],
                          BCC_READY.get(name, c.READY_BCC)))
        if name in BPFTRACE and c.tool_path("bpftrace"):
            tools.append((name, "bpftrace", f"bpftrace ({name})", ["bpftrace", "-e", BPFTRACE[name]], c.READY_BPFTRACE))
    times: dict[str, list] = {t[2]: [] for t in tools}
    errors: dict[str, str] = {}
    for r in range(rounds):
        for name, kind, label, argv, ready in tools:
            if label in errors:
                continue
            seconds, error = _time(argv, ready)
            if error:
                errors[label] = error
            times[label].append(seconds)
        log(f"  start-up round {r + 1}/{rounds} done")
    rows = [{"tracer": name, "kind": kind, "tool": label, "seconds": c.median(times[label]),
             "rounds": times[label], "error": errors.get(label)} for name, kind, label, _, _ in tools]
    return {"rounds": rounds, "rows": rows, "exporter": exporter_memory()}


def render(result: dict) -> str:
    by = {}
    for r in result["rows"]:
        by.setdefault(r["tracer"], {})[r["kind"]] = r
    lines = []

    def cell(r, skipped=None):
        if r is None:
            return f"not timed: {skipped}" if skipped else "-"
        return "fails: " + r["error"][:70] if r["error"] else f"{r['seconds']:.2f}"
    for name, kinds in by.items():
        ours, bcc, bt = kinds.get("bpfwatch"), kinds.get("bcc"), kinds.get("bpftrace")
        good = lambda r: r["seconds"] if r and not r["error"] else None
        lines.append([name, cell(ours), cell(bcc, BCC_SKIP.get(name)), cell(bt),
                      c.ratio(good(ours), good(bcc)), c.ratio(good(ours), good(bt))])
    e = result["exporter"]
    return "\n".join([
        f"Start-up: seconds from spawning the command to its readiness line, median of "
        f"{result['rounds']} interleaved rounds.", "",
        c.table(["tracer", "bpfwatch", "bcc tool", "bpftrace equivalent", "bpfwatch / bcc",
                 "bpfwatch / bpftrace"], lines), "",
        f"`bpfwatch exporter` (default tracers: {e['tracers']}; {e['attached']} attached): ready in "
        f"{e['ready_s']:.2f} s, peak RSS (VmHWM) {e['vm_hwm_mib']:.1f} MiB after {e['scrapes']} scrapes "
        f"of {e['metrics_bytes']} bytes, RSS now {e['vm_rss_mib']:.1f} MiB."])

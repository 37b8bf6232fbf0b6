"""Helpers for the vm tier: tracers started side by side, a child workload."""
from __future__ import annotations

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

# Under emulation a BCC compile takes 5-30 s: start tracers in parallel and
# give them time.
READY_TIMEOUT = 600

# Waits for "go", then makes each named call the given number of times.
CHILD = """
import os, sys
calls = {"getpgid": lambda: os.getpgid(0), "getsid": lambda: os.getsid(0),
         "open": lambda: os.close(os.open(sys.argv[1], os.O_RDONLY))}
plan = [(name, int(n)) for name, n in (a.split("=") for a in sys.argv[2:])]
sys.stdin.readline()
for name, n in plan:
    for _ in range(n):
        calls[name]()
"""


def start_all(tracer, arglists: list[list[str]], at_once: int = 3):
    """Start several tracers, `at_once` compiling together (a BCC compile
    holds ~300 MB: more at once thrash the 2 GB guest); all ready."""
    with ThreadPoolExecutor(min(at_once, len(arglists))) as pool:
        return list(pool.map(lambda a: tracer(a, ready_timeout=READY_TIMEOUT), arglists))


def child(path: str = "/dev/null", **calls: int) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", CHILD, path,
                             *(f"{k}={v}" for k, v in calls.items())],
                            stdin=subprocess.PIPE, text=True)


def go(proc: subprocess.Popen) -> None:
    proc.stdin.write("go\n")
    proc.stdin.close()
    assert proc.wait(120) == 0


def kprobes_listed() -> str:
    """Registered kprobes (the perf-PMU ones too, unlike kprobe_events)."""
    return Path("/sys/kernel/debug/kprobes/list").read_text()


def kprobe_events() -> str:
    return Path("/sys/kernel/tracing/kprobe_events").read_text()


def tracing_programs() -> set[str]:
    """Names of loaded TRACING (fentry/fexit) programs."""
    import json
    out = subprocess.run(["bpftool", "-j", "prog", "show"], capture_output=True, text=True).stdout
    return {p.get("name", "") for p in json.loads(out or "[]") if p.get("type") == "tracing"}

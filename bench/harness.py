"""Shared benchmark machinery: the C workload, tracer processes, statistics."""
from __future__ import annotations

import functools
import os
import shutil
import signal
import statistics
import subprocess
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BPFWATCH = [str(ROOT / ".venv" / "bin" / "python"), "-m", "tracers"]
WORKLOAD_CPU = 1  # the workload is pinned; tracers' user space runs elsewhere
# What each tool prints once its probes are attached.
READY_BPFWATCH = "Hit Ctrl-C to end."
READY_BPFTRACE = "Attaching "
READY_BCC = ("Tracing", "Sampling", "Ctrl-C", "Ctrl+C")  # bcc tools differ


@functools.lru_cache(maxsize=None)
def workload() -> str:
    """bench/workload.c built with gcc -O2 into a temporary directory."""
    out = Path(tempfile.mkdtemp(prefix="bpfwatch-bench-")) / "bpfbench_wl"
    subprocess.run(["gcc", "-O2", "-o", str(out), str(ROOT / "bench" / "workload.c")], check=True)
    return str(out)


def pinned():
    cpus = os.sched_getaffinity(0)
    cpu = WORKLOAD_CPU if WORKLOAD_CPU in cpus else min(cpus)
    return lambda: os.sched_setaffinity(0, {cpu})


def run_workload(*args: str) -> str:
    proc = subprocess.run([workload(), *args], capture_output=True, text=True,
                          preexec_fn=pinned(), check=True)
    return proc.stdout.strip()


def tool_path(name: str) -> str | None:
    return shutil.which(name, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin")


class Tool:
    """A tracer process; started() when its readiness line shows up.

    Output is read continuously (and mostly discarded) by threads so that a
    chatty tracer never blocks on a full pipe; every tool gets the same.
    """

    def __init__(self, cmd: list[str], ready: str | tuple[str, ...], timeout: float = 60.0, env: dict | None = None,
                 match: str | None = None, cwd: str | Path = ROOT):
        self.cmd = cmd
        self.match = match.encode() if match else None
        self.matched = 0  # stdout lines containing `match`
        self.started_at = time.monotonic()
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=cwd,
                                     env=dict(os.environ, PYTHONUNBUFFERED="1", **(env or {})))
        self.ready_after: float | None = None
        self.head = {"out": b"", "err": b""}
        self.lines = 0
        self._ready = threading.Event()
        self._patterns = [p.encode() for p in ((ready,) if isinstance(ready, str) else ready)]
        self._threads = [threading.Thread(target=self._pump, args=(s, k), daemon=True)
                         for s, k in ((self.proc.stdout, "out"), (self.proc.stderr, "err"))]
        for t in self._threads:
            t.start()
        deadline = self.started_at + timeout
        while not self._ready.wait(0.01):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                for t in self._threads:
                    t.join(1)
                self.stop()
                raise RuntimeError(self.why())

    def _pump(self, stream, key: str) -> None:
        tail, partial = b"", b""
        while True:
            chunk = stream.read1(65536)
            if not chunk:
                return
            self.lines += chunk.count(b"\n")
            if self.match and key == "out":
                lines = (partial + chunk).split(b"\n")
                partial = lines.pop()
                self.matched += sum(1 for line in lines if self.match in line)
            if len(self.head[key]) < 16384:
                self.head[key] += chunk[:16384]
            if not self._ready.is_set():
                if any(p in tail + chunk for p in self._patterns):
                    self.ready_after = time.monotonic() - self.started_at
                    self._ready.set()
                tail = (tail + chunk)[-256:]

    def why(self) -> str:
        text = (self.head["err"] + self.head["out"]).decode(errors="replace")
        lines = [l for l in text.splitlines() if l.strip() and "RLIMIT_MEMLOCK" not in l]
        errors = [l for l in lines if "rror" in l or "ailed" in l or "annot" in l]
        return ((errors or lines or [f"exit {self.proc.returncode}"])[0]).strip()[:160]

    def stop(self, sig: int = signal.SIGINT) -> int:
        # bpftrace prints its line before attaching and can miss a SIGINT
        # that arrives while it attaches: repeat, then insist.
        for s, wait in ((sig, 10), (sig, 5), (signal.SIGTERM, 5), (signal.SIGKILL, 30)):
            if self.proc.poll() is not None:
                break
            self.proc.send_signal(s)
            try:
                self.proc.wait(wait)
            except subprocess.TimeoutExpired:
                pass
        for t in self._threads:
            t.join(5)
        return self.proc.returncode

    def cpu_seconds(self) -> float:
        """CPU time of the tool's threads so far, in ns from the scheduler
        (schedstat): utime/stime come in 10 ms ticks, too coarse per event."""
        total = 0
        for task in Path(f"/proc/{self.proc.pid}/task").iterdir():
            try:
                total += int((task / "schedstat").read_text().split()[0])
            except (OSError, ValueError, IndexError):  # a thread that just ended
                pass
        return total / 1e9

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def ratio(a, b) -> str:
    if a is None or b is None or b <= 0:
        return "-"
    return f"{a / b:.2f}x"


def table(headers: list[str], rows: list[list]) -> str:
    """A Markdown table (pipes), columns padded for the terminal too."""
    cells = [[str(h) for h in headers]] + [["-" if c is None else str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    fmt = lambda r: "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |"
    sep = "| " + " | ".join("-" * w for w in widths) + " |"
    return "\n".join([fmt(cells[0]), sep] + [fmt(r) for r in cells[1:]])


def fmt_num(value, digits: int = 1) -> str | None:
    return None if value is None else f"{value:.{digits}f}"


def prepare_machine() -> None:
    """Mount tracefs & co. and point BCC (ours and bcc tools') at headers."""
    from tracers.runtime import get_probe
    get_probe()  # sets BCC_KERNEL_SOURCE for fallback headers; children inherit it


class bpf_run_stats:
    """Kernel-side run time of every BPF program while held (BPF_ENABLE_STATS:
    the fd keeps it on; it goes off with the fd, even if we are killed)."""

    BPF_ENABLE_STATS = 32  # enum bpf_cmd

    def __enter__(self):
        from tracers.runtime import bpfsys
        # enable_stats.type = BPF_STATS_RUN_TIME (0); OSError if refused
        self.fd = bpfsys.bpf(self.BPF_ENABLE_STATS, bytes(4))
        return self

    def __exit__(self, *exc):
        os.close(self.fd)


def prog_ns_per_run(pid: int, min_runs: int = 1000) -> float | None:
    """Sum over the programs owned by `pid` that ran of run_time/run_cnt."""
    import json
    out = subprocess.run(["bpftool", "prog", "show", "--json"], capture_output=True, text=True)
    try:
        progs = json.loads(out.stdout)
    except ValueError:
        return None
    ids = set()  # the programs whose fds the process holds (bpftool may lack pid support)
    for fd in Path(f"/proc/{pid}/fdinfo").iterdir():
        try:
            for line in fd.read_text().splitlines():
                if line.startswith("prog_id:"):
                    ids.add(int(line.split()[1]))
        except (OSError, ValueError):
            pass
    total, seen = 0.0, False
    for p in progs:
        if p.get("id") in ids and p.get("run_cnt", 0) >= min_runs:
            total += p["run_time_ns"] / p["run_cnt"]
            seen = True
    return total if seen else None

"""Concurrent scrapes of the real exporter, idle and under an event storm.

    sudo .venv/bin/python -m bench.concurrent_scrapes [--clients 20] [--scrapes 10]

Starts `bpfwatch exporter` with its default tracers, then curl keeps CLIENTS
scrapes of /metrics in flight until each client's SCRAPES are done: first on a quiet machine, then
while an exec storm and a syscall storm run (every exec and syscall runs the
exporter's BPF programs). Prints per-scrape latency (p50, p95, max), the
exporter's CPU per scrape and what one scrape alone costs, so the time spent
waiting (for the GIL or a CPU) shows beside the time spent working.
"""
from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import threading
import time
import urllib.request

from bench import harness as c


def scrape(url: str) -> tuple[float, int]:
    began = time.monotonic()
    with urllib.request.urlopen(url, timeout=60) as resp:
        size = len(resp.read())
    return time.monotonic() - began, size


def burst(url: str, clients: int, scrapes: int) -> list[float]:
    """clients * scrapes requests, `clients` at a time, by curl (a C client:
    Python threads in this process would measure their own GIL)."""
    out = subprocess.run(["curl", "-s", "--parallel", "--parallel-immediate",
                          "--parallel-max", str(clients), "-w", "%{time_total}\n",
                          *["-o", "/dev/null", url] * (clients * scrapes)],
                         capture_output=True, text=True, check=True)
    return [float(t) for t in out.stdout.split()]


class Storm:
    """execs and getppid calls flat out, until stopped."""

    def __init__(self):
        self.stop_flag = threading.Event()
        self.threads = [threading.Thread(target=self._loop, args=(args,), daemon=True) for args in
                        (["exec", "200", "/bin/true"], ["getppid", "2000000"])]
        for t in self.threads:
            t.start()

    def _loop(self, args):
        while not self.stop_flag.is_set():
            subprocess.run([c.workload(), *args], capture_output=True)

    def stop(self):
        self.stop_flag.set()
        for t in self.threads:
            t.join()


def process_cpu(pid: int) -> float:
    """utime + stime of the whole process, threads that ended included (a
    scrape's connection thread ends with it: schedstat of live threads misses it)."""
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def phase(exporter: c.Tool, url: str, clients: int, scrapes: int) -> dict:
    cpu = process_cpu(exporter.proc.pid)
    times = sorted(burst(url, clients, scrapes))
    n = len(times)
    spent = process_cpu(exporter.proc.pid) - cpu
    single = statistics.median(burst(url, 1, 9))
    return {"p50": statistics.median(times), "p95": times[int(0.95 * (n - 1))], "max": times[-1],
            "cpu_per_scrape": spent / n, "alone": single, "n": n}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.concurrent_scrapes",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--scrapes", type=int, default=10, help="per client")
    args = parser.parse_args(argv)
    c.prepare_machine()
    c.workload()  # built before anything is timed
    exporter = c.Tool([*c.BPFWATCH, "exporter", "--listen", "127.0.0.1:0"], "Hit Ctrl-C to end.",
                      timeout=120)
    try:
        url = re.search(rb"(http://\S+/metrics)", exporter.head["err"]).group(1).decode()
        size = scrape(url)[1]
        rows = [("quiet", phase(exporter, url, args.clients, args.scrapes))]
        storm = Storm()
        try:
            time.sleep(2)  # the storm at full speed
            rows.append(("exec + syscall storm", phase(exporter, url, args.clients, args.scrapes)))
        finally:
            storm.stop()
    finally:
        exporter.stop()
    print(f"{args.clients} clients x {args.scrapes} scrapes of the default exporter ({size} bytes each)\n")
    print(c.table(["machine", "scrapes", "p50 (ms)", "p95 (ms)", "max (ms)", "one alone (ms)",
                   "exporter CPU per scrape (ms)"],
                  [[name, r["n"], c.fmt_num(r["p50"] * 1e3), c.fmt_num(r["p95"] * 1e3),
                    c.fmt_num(r["max"] * 1e3), c.fmt_num(r["alone"] * 1e3),
                    c.fmt_num(r["cpu_per_scrape"] * 1e3, 2)] for name, r in rows]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

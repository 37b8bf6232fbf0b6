"""What our BPF programs cost: the kernel's per-program run time and count.

The kernel counts them only while statistics are on (a global switch: two
clock reads per program run, for every BPF program on the machine). With
--bpf-stats the exporter turns them on for as long as it runs (an fd from
BPF_ENABLE_STATS; the kernel turns them off when the last holder closes it,
also when the exporter is killed), as ebpf_exporter's operators do with
kernel.bpf_stats_enabled. Without it, they are served only when the sysctl
is on anyway.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from prometheus_client.core import CounterMetricFamily

from tracers.runtime import bpfsys

NAMESPACE = "bpfwatch"
SYSCTL = Path("/proc/sys/kernel/bpf_stats_enabled")


@dataclass(frozen=True)
class Program:
    tracer: str
    name: str  # the entry point, on_<event>
    fd: int


def programs_of(tracer: str, bpf) -> list[Program]:
    """The loaded programs of a BCC module (entry points it loaded)."""
    out = []
    for name, fn in bpf.funcs.items():
        name = name.decode() if isinstance(name, bytes) else name
        out.append(Program(tracer, name, fn.fd))
    return sorted(out, key=lambda p: p.name)


def sysctl_on() -> bool:
    try:
        return SYSCTL.read_text().strip() == "1"
    except OSError:
        return False


class ProgramStats:
    """A prometheus-client collector: bpfwatch_program_run_seconds_total and
    bpfwatch_program_runs_total{tracer,program}."""

    def __init__(self, registry=None, enable: bool = False):
        self.programs: list[Program] = []
        self.stats_fd = bpfsys.enable_run_time_stats() if enable else None
        if registry is not None:
            registry.register(self)

    def add(self, programs: list[Program]) -> None:
        self.programs += programs

    def close(self) -> None:
        self.programs = []
        if self.stats_fd is not None:
            os.close(self.stats_fd)
            self.stats_fd = None

    @staticmethod
    def _families():
        seconds = CounterMetricFamily(f"{NAMESPACE}_program_run_seconds",
                                      "Time the kernel spent running this BPF program "
                                      "(counted while BPF statistics are on).", labels=["tracer", "program"])
        runs = CounterMetricFamily(f"{NAMESPACE}_program_runs",
                                   "Times this BPF program ran (counted while BPF statistics are on).",
                                   labels=["tracer", "program"])
        return seconds, runs

    def describe(self):
        return list(self._families())  # the names, so /metrics?name[]=... finds them

    def collect(self):
        if not self.programs or (self.stats_fd is None and not sysctl_on()):
            return
        seconds, runs = self._families()
        for p in list(self.programs):
            try:
                run_time_ns, run_count = bpfsys.prog_run_stats(p.fd)
            except OSError:
                continue  # closed during shutdown: nothing to say
            seconds.add_metric([p.tracer, p.name], run_time_ns / 1e9)
            runs.add_metric([p.tracer, p.name], run_count)
        yield seconds
        yield runs

"""Shared by the exporter's kernel tests: start it, scrape it, run workloads."""
from __future__ import annotations

import re
import subprocess
import sys
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from conftest import ROOT, TracerProcess

EXAMPLES = ROOT / "exporters" / "examples"
ERRORS_TOML = str(EXAMPLES / "syscall_errors.toml")
READS_TOML = str(EXAMPLES / "read_sizes.toml")

# sched_get_priority_min with a policy that does not exist: fails with EINVAL,
# and nothing else on the machine makes that call.
FAILING_CALLS = """
import ctypes, sys
libc = ctypes.CDLL(None, use_errno=True)
for _ in range(int(sys.argv[1])):
    assert libc.sched_get_priority_min(12345) == -1 and ctypes.get_errno() == 22
"""


def start_exporter(*args: str) -> tuple[TracerProcess, str]:
    """(process, http(s)://host:port/metrics) with a kernel-picked port unless --listen given."""
    argv = ["exporter", *args]
    if "--listen" not in args:
        argv += ["--listen", "127.0.0.1:0"]
    proc = TracerProcess(argv, ready_timeout=120)
    url = re.search(r"(https?://\S+/metrics)\.\.\.", proc.stderr).group(1)
    return proc, url


def scrape(url: str, **kw) -> str:
    with urllib.request.urlopen(url, timeout=10, **kw) as resp:
        return resp.read().decode()


def samples(text: str) -> dict:
    """{(sample name, frozenset(labels)): value}."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(parsed: dict, name: str, **labels) -> float:
    return parsed.get((name, frozenset(labels.items())), 0.0)


def failing_calls(n: int) -> None:
    subprocess.run([sys.executable, "-c", FAILING_CALLS, str(n)], check=True, timeout=30)


def exporter_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tracers", "exporter", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)


def write(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)

"""What operators expect: /healthz, process_* metrics in our own registry,
and what each BPF program costs (kernel run-time statistics, --bpf-stats)."""
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from exporter_helpers import ERRORS_TOML, READS_TOML, samples, scrape, start_exporter, value, write

pytestmark = pytest.mark.kernel

SYSCTL = Path("/proc/sys/kernel/bpf_stats_enabled")


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


@pytest.fixture
def exporter():
    started = []

    def start(*args):
        proc, url = start_exporter(*args)
        started.append(proc)
        return proc, url
    yield start
    for proc in started:
        if proc.proc.poll() is None:  # not already stopped by the test
            assert proc.stop(signal.SIGTERM) == 0
        proc.close()


def test_healthz_is_200_when_everything_asked_for_is_attached(exporter):
    proc, url = exporter("--tracers", "syscount", "--program", ERRORS_TOML)
    status, body = get(url.replace("/metrics", "/healthz"))
    assert (status, body) == (200, "ok: 2 attached\n")


def test_healthz_is_503_with_the_reason_when_a_program_is_not_attached(exporter, tmp_path):
    c_file = READS_TOML.replace(".toml", ".bpf.c")
    toml = write(tmp_path / "gone.toml", f"""
name = "gone"
c_file = "{c_file}"
[[alternatives]]
name = "tracepoint"
define = "HOOK_TRACEPOINT"
hooks = [{{ kind = "tracepoint", target = "syscalls:sys_exit_nosuchcall", fn = "on_read_exit" }}]
[[metrics]]
name = "gone_reads"
kind = "histogram"
buckets = "exp2"
help = "Reads."
map = "read_sizes"
""")
    proc, url = exporter("--tracers", "none", "--program", ERRORS_TOML, "--program", toml)
    status, body = get(url.replace("/metrics", "/healthz"))
    assert status == 503
    assert body.startswith("gone: not attached: gone: no usable hook on this kernel")
    assert "tracepoint syscalls:sys_exit_nosuchcall does not exist" in body
    assert "syscall_errors" not in body  # attached: not a reason


def test_process_metrics_come_from_our_own_registry(exporter):
    proc, url = exporter("--tracers", "none", "--program", ERRORS_TOML)
    got = samples(scrape(url))
    status = dict(line.split(":\t", 1) for line in open(f"/proc/{proc.pid}/status").read().splitlines()
                  if ":\t" in line)
    assert value(got, "process_resident_memory_bytes") > 0
    assert value(got, "process_open_fds") >= 3
    fds = len(os.listdir(f"/proc/{proc.pid}/fd"))
    assert abs(value(got, "process_open_fds") - fds) <= 2  # of this process, not of the test
    vm_size = int(status["VmSize"].split()[0]) * 1024
    assert 0.5 * vm_size < value(got, "process_virtual_memory_bytes") < 2 * vm_size
    # The exporter's own registry: python_gc_* and python_info live only in the global one.
    assert not any(name.startswith("python_gc") for name, _ in got)


SYSCALLS = """
import ctypes, sys
libc = ctypes.CDLL(None, use_errno=True)
for _ in range(int(sys.argv[1])):
    libc.sched_get_priority_min(12345)
"""


def runs(url: str) -> tuple[float, float]:
    got = samples(scrape(url))
    labels = dict(tracer="syscall_errors", program="on_sys_exit")
    return (value(got, "bpfwatch_program_runs_total", **labels),
            value(got, "bpfwatch_program_run_seconds_total", **labels))


@pytest.fixture
def witness():
    """A program of our own on getppid: its run count shows whether the
    kernel's statistics are on (the sysctl shows only its own setting)."""
    from tracers.runtime import bpfsys, get_probe
    get_probe()  # headers for BCC
    from bcc import BPF
    bpf = BPF(text=b"int on_getppid(void *ctx) { return 0; }")
    bpf.attach_tracepoint(tp=b"syscalls:sys_enter_getppid", fn_name=b"on_getppid")
    fd = bpf.funcs[b"on_getppid"].fd

    def counting() -> bool:
        before = bpfsys.prog_run_stats(fd)[1]
        for _ in range(100):
            os.getppid()
        return bpfsys.prog_run_stats(fd)[1] - before >= 100
    yield counting
    bpf.cleanup()


def test_bpf_run_stats_count_every_run_and_only_while_asked(exporter, witness):
    always_on = SYSCTL.read_text().strip() == "1"  # someone turned them on for good
    assert witness() == always_on
    proc, url = exporter("--tracers", "none", "--program", ERRORS_TOML, "--bpf-stats")
    assert witness()  # on while the exporter holds the stats fd
    before_runs, before_seconds = runs(url)
    subprocess.run([sys.executable, "-c", SYSCALLS, "20000"], check=True, timeout=60)
    after_runs, after_seconds = runs(url)
    # on_sys_exit runs at every syscall exit on the machine: at least ours
    assert after_runs - before_runs >= 20000
    assert after_seconds > before_seconds > 0
    assert proc.stop(signal.SIGTERM) == 0
    assert witness() == always_on  # off again once it is gone
    if not always_on:
        proc, url = exporter("--tracers", "none", "--program", ERRORS_TOML)
        assert not witness()
        assert "bpfwatch_program_runs_total" not in scrape(url)  # not asked: not on, not served


def test_bpf_stats_go_off_when_the_exporter_is_killed(exporter, witness):
    always_on = SYSCTL.read_text().strip() == "1"
    proc, url = exporter("--tracers", "none", "--program", ERRORS_TOML, "--bpf-stats")
    assert witness() and runs(url)[0] > 0
    assert proc.stop(signal.SIGKILL) == -9
    assert witness() == always_on  # the kernel closed the stats fd with the process

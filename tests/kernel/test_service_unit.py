"""The exporter inside its unit's sandbox (as far as a machine whose PID 1 is
not systemd can impose it: tests/kernel/unit_sandbox.py): the unit's
capabilities as uid 65534, NoNewPrivileges, MemoryDenyWriteExecute, its
SystemCallFilter and RestrictAddressFamilies. BPF loading must work there."""
import re
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from conftest import ROOT, TracerProcess
from test_capabilities import as_nobody, status

pytestmark = pytest.mark.kernel

UNIT = ROOT / "exporters" / "bpfwatch-exporter.service"
SANDBOX = Path(__file__).with_name("unit_sandbox.py")


def unit_capabilities(text: str) -> set[str]:
    line = re.search(r"^AmbientCapabilities=(.*)$", text, re.M).group(1)
    return {c.lower().removeprefix("cap_") for c in line.split()}


def in_sandbox(unit: Path) -> list[str]:
    caps = unit_capabilities(unit.read_text())
    return [*as_nobody(caps), "/usr/bin/python3", str(SANDBOX), str(unit)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_exporter_serves_inside_the_unit_sandbox():
    port = free_port()
    exporter = TracerProcess(["exporter", "--listen", f"127.0.0.1:{port}"], prefix=in_sandbox(UNIT))
    try:
        assert re.search(r"Serving (\d+)/\1 tracers", exporter.stderr), exporter.stderr  # all attached
        assert status(exporter.pid)["Seccomp"] == "2" and status(exporter.pid)["NoNewPrivs"] == "1"
        assert status(exporter.pid)["CapEff"] == "0" * 16
        subprocess.run(["/bin/true"], check=True)
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
        assert re.search(r"^bpfwatch_execs_total(\{[^}]*\})? [1-9]", body, re.M), body[:500]
        assert exporter.stop(signal.SIGTERM) == 0
    finally:
        exporter.close()


def test_the_sandbox_is_real(tmp_path):
    """Control: the same unit without bpf() in its filter cannot load anything."""
    unit = tmp_path / "no-bpf.service"
    unit.write_text(re.sub(r"^(SystemCallFilter=.*) bpf", r"\1", UNIT.read_text(), flags=re.M))
    proc = subprocess.run([*in_sandbox(unit), sys.executable, "-m", "tracers", "exporter", "--check"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "Operation not permitted" in proc.stderr, proc.stderr[-1000:]

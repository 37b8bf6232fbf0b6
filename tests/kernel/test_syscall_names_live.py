"""Syscall names on the host kernel: numbers newer than Linux 6.1 by name,
both ways (--syscall NAME and the printed rows), and no guessing elsewhere."""
import subprocess
import sys

import pytest

from conftest import ROOT

pytestmark = pytest.mark.kernel

# cachestat (451, Linux 6.5) with fd -1: fails with EBADF at once, still one entry.
CHILD = """
import ctypes, sys
libc = ctypes.CDLL(None)
sys.stdin.readline()
for _ in range(int(sys.argv[1])):
    libc.syscall(451, -1, None, None, 0)
"""


def test_a_syscall_newer_than_6_1_is_counted_by_name(tracer):
    child = subprocess.Popen([sys.executable, "-c", CHILD, "17"], stdin=subprocess.PIPE, text=True)
    run = tracer(["syscount", "--json", "--syscall", "cachestat", "-p", str(child.pid)])
    child.stdin.write("go\n")
    child.stdin.close()
    assert child.wait(30) == 0
    assert run.stop() == 0
    rows = [r for line in run.json_lines() for r in line["syscalls"]]
    assert rows == [{"syscall": "cachestat", "count": 17}]


REFUSE = """
import sys
from tracers.runtime import syscall_table
syscall_table._libseccomp = lambda: None  # an architecture nothing names
syscall_table.platform.machine = lambda: "sparc64"
from tracers.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.parametrize("argv", [["syscount", "-d", "1"], ["exporter", "--check", "--tracers", "syscount"]])
def test_an_architecture_without_names_is_refused_before_loading(argv):
    proc = subprocess.run([sys.executable, "-c", REFUSE, *argv], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and "cannot name sparc64 system calls" in proc.stderr
    assert "Traceback" not in proc.stderr

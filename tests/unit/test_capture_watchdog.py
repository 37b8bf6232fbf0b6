"""quiet_stderr's watchdog: when C code ends the process inside a capture
(LLVM's exit(1)), the captured error still reaches the real stderr, once."""
import subprocess
import sys

from conftest import ROOT

CHILD = r"""
import os, signal, sys
from tracers.runtime.capture import quiet_stderr
how = sys.argv[1]
with quiet_stderr(if_exit="bpfwatch: demo: BPF program failed to compile: "):
    os.write(2, b"warning: noise\n")
    if how == "exit":
        os.write(2, b"error: in function f: Looks like the BPF stack limit of 512 bytes is exceeded.\n")
        os._exit(1)  # as LLVM's exit(1): no Python cleanup
    if how == "killed":
        os.kill(os.getpid(), signal.SIGKILL)
print("left the block", flush=True)
"""


def run(how: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", CHILD, how], cwd=ROOT, capture_output=True,
                          text=True, timeout=30)


def test_an_exit_inside_is_reported_as_one_line():
    proc = run("exit")
    assert proc.returncode == 1
    assert proc.stderr == ("bpfwatch: demo: BPF program failed to compile: error: in function f: "
                           "Looks like the BPF stack limit of 512 bytes is exceeded.\n")


def test_a_normal_block_prints_nothing():
    proc = run("normal")
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "left the block\n", "")


def test_a_sigkill_without_an_error_prints_nothing():
    proc = run("killed")
    assert (proc.returncode, proc.stderr) == (-9, "")

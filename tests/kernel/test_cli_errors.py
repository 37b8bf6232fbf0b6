"""Bad input: one clear line on stderr and a non-zero exit, never a traceback."""
import subprocess
import sys

import pytest

from conftest import ROOT


def bpfwatch(*args):
    return subprocess.run([sys.executable, "-m", "tracers", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("args, words", [
    (["nosuchtracer"], "unknown command"),
    (["execsnoop", "-p", "999999999"], "no process with PID"),
    (["syscount", "-p", "0"], "positive"),
    (["syscount", "--", "-1"], "positive"),
    (["syscount", "1", "0"], "positive"),
    (["syscount", "--syscall", "no_such_call"], "no_such_call"),
    (["execsnoop", "--comm", "a-name-longer-than-15"], "15 bytes"),
    (["execsnoop", "--hook", "nosuchhook"], "invalid choice"),
    # issue 11: these were tracebacks (OverflowError, IsADirectoryError after the trace)
    (["execsnoop", "-d", "inf"], "at most"),
    (["opensnoop", "-d", "nan"], "must be positive"),
    (["tcplife", "-d", "1e300"], "at most"),
    (["syscount", "1e300"], "at most"),
    (["syscount", "inf", "1"], "at most"),
    (["tctraffic", "lo", "1e300"], "at most"),
    (["offcputime", "--duration", "1", "--svg", "/tmp"], "is a directory"),
    (["profile", "--duration", "1", "--svg", ""], "file name is empty"),
    (["skbdrop", "--netns", "/etc/passwd"], "not a network namespace"),
])
def test_bad_input_gets_one_line(args, words):
    proc = bpfwatch(*args)
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert words in lines[0]
    assert "Traceback" not in proc.stderr


def test_help_ends_with_examples():
    proc = bpfwatch("syscount", "--help")
    assert proc.returncode == 0
    assert "examples:" in proc.stdout and "bpfwatch syscount" in proc.stdout.split("examples:")[1]


def test_ebpf_prints_the_c_with_defines():
    proc = bpfwatch("syscount", "--ebpf", "--syscall", "openat", "-L")
    assert proc.returncode == 0
    assert "#define FILTER_SYSCALL 257" in proc.stdout and "on_sys_enter" in proc.stdout

"""profile on the host kernel: a spinning child is the hottest stack, by name,
in the folded output and in a flame graph SVG that parses as XML."""
import signal
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest

from conftest import ROOT, unique_name
from test_sched_tracers import assert_nothing_left, build, our_objects

# Waits for a byte on stdin first, so it does not slow the tracer's compile.
SPINNER = r"""
#include <unistd.h>
volatile unsigned long sink;
__attribute__((noinline)) void NAME(void) { for (;;) sink++; }
int main(void) { char c; read(0, &c, 1); NAME(); return 0; }
"""
SVG = "{http://www.w3.org/2000/svg}"


@pytest.mark.kernel
def test_spinning_function_is_the_hottest_stack(tracer, tmp_path):
    name = unique_name("spin_")
    exe = build(tmp_path, "spinner", SPINNER.replace("NAME", name))
    svg = tmp_path / "flame.svg"
    kid = subprocess.Popen([str(exe)], stdin=subprocess.PIPE)
    before = our_objects()
    try:
        run = tracer(["profile", "-F", "499", "-p", str(kid.pid), "--duration", "1.5", "--svg", str(svg)])
        kid.stdin.write(b"g")
        kid.stdin.flush()
        assert run.wait(60) == 0  # --duration: a normal exit, while the child still runs
    finally:
        kid.kill()
        kid.wait()
    assert_nothing_left(before)

    lines = [line for line in run.stdout.splitlines() if line.strip()]
    hottest, samples = lines[0].rsplit(" ", 1)
    frames = hottest.split(";")
    assert frames[0] == "spinner" and frames[-1] == name and "main" in frames, lines[:3]
    assert int(samples) >= 0.5 * sum(int(line.rsplit(" ", 1)[1]) for line in lines)

    root = ET.parse(svg).getroot()  # valid XML, or this raises
    assert root.tag == f"{SVG}svg"
    titles = [t.text for t in root.iter(f"{SVG}title")]
    ours = [t for t in titles if t.startswith(f"{name} (")]
    # The frame's box holds every stack through it (some add kernel frames).
    through = sum(int(n) for s, n in (line.rsplit(" ", 1) for line in lines)
                  if s == hottest or s.startswith(hottest + ";"))
    assert ours and f"{through:,} samples" in ours[0], titles[:5]


@pytest.mark.kernel
@pytest.mark.parametrize("ending", ["SIGTERM", "SIGKILL"])  # --duration above; SIGINT: test_sched_tracers
def test_profile_leaves_nothing(tracer, ending):
    before = our_objects()
    run = tracer(["profile", "-F", "99", "-K"])
    assert our_objects()["prog"] - before["prog"], "tracer loaded no program?"
    assert run.stop(getattr(signal, ending)) == (-9 if ending == "SIGKILL" else 0)
    assert_nothing_left(before)


def bpfwatch(*args):
    return subprocess.run([sys.executable, "-m", "tracers", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("args, words", [
    (["profile", "-F", "0"], "positive"),
    (["profile", "-C", "4096"], "no CPU 4096"),
    (["profile", "--svg", "/nonexistent-dir/x.svg"], "No such file or directory"),
    (["profile", "--event", "bogus"], "invalid choice"),
    (["profile", "-U", "-K"], "not allowed"),
    (["offcputime", "-u", "-k"], "not allowed"),
    (["offcputime", "-m", "0"], "positive"),
    (["offcputime", "-m", "10", "-M", "5"], "below"),
    (["runqlat", "-P", "-L"], "not allowed"),
    (["cpudist", "--hook", "nosuch"], "invalid choice"),
    (["runqlat", "1", "0"], "positive"),
])
def test_bad_input_gets_one_line(args, words):
    proc = bpfwatch(*args)
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and words in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("name", ["runqlat", "cpudist", "offcputime", "profile"])
def test_help_ends_with_examples(name):
    proc = bpfwatch(name, "--help")
    assert proc.returncode == 0
    assert f"bpfwatch {name}" in proc.stdout.split("examples:")[1]

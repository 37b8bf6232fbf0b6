"""A short letter our tracer shares with its bcc namesake means the same
thing there (issue 13 §6): someone used to `profile-bpfcc -d` must not get
a different option from `bpfwatch profile -d`. No root: only --help runs."""
import os
import re
import subprocess

import pytest

from tracers import options
from tracers.registry import tracer_classes

BCC_DIR = "/usr/sbin"  # Debian's bpfcc-tools: <tool>-bpfcc

# Our tracers whose bcc tool has the same name.
BCC_NAMESAKES = (
    "biolatency", "biosnoop", "cpudist", "execsnoop", "funccount", "funclatency", "offcputime",
    "opensnoop", "profile", "runqlat", "syscount", "tcpaccept", "tcpconnect", "tcplife", "tcpretrans",
)

# (tracer, bcc's long name) -> ours, where the words differ but not the meaning.
SAME_MEANING = {
    # bcc "include OS queued time"; ours measures from insert, queue time included
    ("biosnoop", "--queue"): "--queued",
    # bcc "trace only failed syscalls (return < 0)"; ours counts failed syscalls only
    ("syscount", "--failures"): "--failed",
}
# Deliberately absent: execsnoop's -x/--fails ("include failed exec()s",
# which bcc hides by default) is not our --failed (failed execs only).

# An option line of argparse's help: "  -d DISK, --disk DISK  ...", "  -d, --disk DISK" (3.13)
# or "  -U, --user-stacks-only"
OPTION_LINE = re.compile(r"^  (-[A-Za-z0-9])(?: (?:\{[^}]*\}|[^\s,]+))?(?:, (--[\w-]+))?")


def bcc_tool(name: str) -> str:
    return os.path.join(BCC_DIR, f"{name}-bpfcc")


def bcc_letters(name: str) -> dict[str, str]:
    """bcc tool's short letter -> its long name ("" if it has none)."""
    proc = subprocess.run([bcc_tool(name), "--help"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    letters = {}
    for line in proc.stdout.splitlines():
        m = OPTION_LINE.match(line)
        if m:
            letters[m.group(1)] = m.group(2) or ""
    assert "-h" in letters, f"no options parsed from {name}-bpfcc --help:\n{proc.stdout}"
    return letters


def our_letters(name: str) -> dict[str, str]:
    """Our short letter -> its long name, hidden (refused) options included."""
    parser = options.build_parser(tracer_classes()[name]())
    letters = {}
    for flag, action in parser._option_string_actions.items():
        if len(flag) == 2:
            letters[flag] = next((s for s in action.option_strings if s.startswith("--")), "")
    return letters


@pytest.mark.parametrize("name", BCC_NAMESAKES)
def test_shared_short_letters_mean_what_they_mean_in_bcc(name):
    # no skip: the test stack (tracers.bootstrap --test) installs bpfcc-tools
    assert os.path.exists(bcc_tool(name)), f"{bcc_tool(name)} missing: bpfcc-tools is not installed"
    theirs, ours = bcc_letters(name), our_letters(name)
    differ = {}
    for letter in sorted(theirs.keys() & ours.keys()):
        bcc_long = theirs[letter]
        if ours[letter] != SAME_MEANING.get((name, bcc_long), bcc_long):
            differ[letter] = f"bcc {bcc_long or '(no long name)'}, ours {ours[letter]}"
    assert not differ, f"{name}: short letters that mean something else in bcc: {differ}"


def test_namesakes_are_listed():
    """A tracer added later with a bcc namesake joins the check above."""
    ours = set(tracer_classes())
    assert set(BCC_NAMESAKES) <= ours
    unlisted = {n for n in ours - set(BCC_NAMESAKES) if os.path.exists(bcc_tool(n))}
    assert unlisted == set()


def test_duration_letter_opt_out_keeps_the_long_option():
    classes = tracer_classes()
    for name in ("profile", "offcputime", "tcpconnect"):
        parser = options.build_parser(classes[name]())
        assert parser.parse_args(["--duration", "2"]).duration == 2.0
        assert "-d" not in parser._option_string_actions
    bio = options.build_parser(classes["biolatency"]()).parse_args(["-d", "sda", "--duration", "1"])
    assert (bio.disk, bio.duration) == ("sda", 1.0)  # bcc's -d DISK
    assert options.build_parser(classes["syscount"]()).parse_args(["-d", "3"]).duration == 3.0

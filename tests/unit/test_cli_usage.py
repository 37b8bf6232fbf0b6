"""The command line a new user meets first: the command list, usage errors,
and only the options a tracer honours (no root, no bcc)."""
import subprocess
import sys

import pytest

from conftest import ROOT
from tracers import options
from tracers.registry import tracer_classes


def bpfwatch(*args):
    return subprocess.run([sys.executable, "-m", "tracers", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)


def test_no_arguments_lists_the_commands_and_succeeds():
    proc = bpfwatch()
    assert proc.returncode == 0 and proc.stderr == ""
    listed = {line.split()[0] for line in proc.stdout.splitlines() if line.startswith("  ")}
    assert {"doctor", "list", "exporter", *tracer_classes()} <= listed


@pytest.mark.parametrize("argv", [["--bogus"], ["nosuchtracer", "-d", "1"]])
def test_a_usage_error_is_one_line_on_stderr(argv):
    proc = bpfwatch(*argv)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and "unknown command" in proc.stderr


REFUSE_PROCESS_FILTERS = {"sockfilter", "tcpretrans", "skbdrop", "tctraffic"}


@pytest.mark.parametrize("name", sorted(tracer_classes()))
def test_process_filters_are_offered_only_where_honoured(name):
    tracer = tracer_classes()[name]()
    help_text = options.build_parser(tracer).format_help()
    offered = "--pid" in help_text and "--comm" in help_text
    assert offered == (name not in REFUSE_PROCESS_FILTERS), help_text
    assert tracer.process_filters == offered


@pytest.mark.parametrize("name", sorted(REFUSE_PROCESS_FILTERS))
def test_process_filters_given_anyway_get_the_reason(name, capsys):
    parser = options.build_parser(tracer_classes()[name]())
    with pytest.raises(SystemExit) as exit_:
        parser.parse_args(["-p", "1"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not offered" in err and "no process is current" in err


def test_stack_letters_follow_bcc():
    classes = tracer_classes()
    off = options.build_parser(classes["offcputime"]())
    args = off.parse_args(["-u", "-K"])
    assert args.user_threads_only and args.kernel_stacks_only and not args.user_stacks_only
    args = off.parse_args(["-k", "-U"])
    assert args.kernel_threads_only and args.user_stacks_only
    prof = options.build_parser(classes["profile"]())
    assert prof.parse_args(["-U"]).user_stacks_only and prof.parse_args(["-K"]).kernel_stacks_only
    assert "--user-threads-only" not in prof.format_help()  # bcc's profile has no -u/-k


def test_doctor_prints_headers_once(capsys):
    from tracers import doctor
    data = {"kernel": "6.18.0", "headers": {"mode": "fallback", "version": "6.1.0-57-amd64", "path": "/x"},
            "mount_problems": [],
            "features": {"btf": {"available": True, "detail": "present"},
                         "headers": {"available": True, "detail": "fallback 6.1.0-57-amd64: ..."}},
            "syscall_names": {"available": True, "detail": "368 names", "unnamed": []}}
    doctor.print_text(data)
    names = [line.split()[0] for line in capsys.readouterr().out.splitlines()]
    assert names == ["kernel", "btf", "headers", "syscall_names"]

"""execsnoop on the host kernel: exact counts of a known workload."""
import shutil
import subprocess

import pytest

from conftest import unique_name

pytestmark = pytest.mark.kernel


@pytest.fixture
def program(tmp_path):
    name = unique_name("bpfwx")
    path = tmp_path / name
    shutil.copy("/bin/true", path)
    return path


def run_workload(path, times, failures=0):
    script = f'for i in $(seq {times}); do "{path}" arg1 "two words"; done; ' \
             f'for i in $(seq {failures}); do "{path}.missing" 2>/dev/null; done; true'
    subprocess.run(["sh", "-c", script], check=True)


def test_sees_exactly_the_23_execs(tracer, program):
    run = tracer(["execsnoop", "--json"])
    run_workload(program, 23, failures=4)
    assert run.stop() == 0
    events = run.json_lines()
    ours = [e for e in events if e.get("filename") == str(program)]
    assert len(ours) == 23
    assert all(e["ret"] == 0 and e["comm"] == program.name for e in ours)
    assert all(e["argv"] == [str(program), "arg1", "two words"] for e in ours)
    failed = [e for e in events if e.get("filename") == f"{program}.missing"]
    assert len(failed) == 4
    assert all(e["ret"] == -2 and e["error"] == "ENOENT" for e in failed)
    summary = events[-1]["summary"]
    assert summary["events_dropped"] == 0 and summary["events"] == len(events) - 1


def test_comm_filter_keeps_only_that_program(tracer, program):
    run = tracer(["execsnoop", "--json", "--comm", program.name])
    run_workload(program, 7)
    subprocess.run(["/bin/true"], check=True)
    run.stop()
    events = [e for e in run.json_lines() if "summary" not in e]
    assert [e["comm"] for e in events] == [program.name] * 7


def test_duration_exits_zero_by_itself(tracer):
    run = tracer(["execsnoop", "--json", "-d", "1"])
    assert run.wait(30) == 0
    assert "summary" in run.json_lines()[-1]


def test_failed_only(tracer, program):
    run = tracer(["execsnoop", "--json", "--failed"])
    run_workload(program, 3, failures=5)
    run.stop()
    events = [e for e in run.json_lines() if "summary" not in e]
    assert not [e for e in events if e["filename"] == str(program)]
    assert len([e for e in events if e["filename"] == f"{program}.missing"]) == 5
    assert all(e["ret"] < 0 for e in events)


def test_ppid_is_right_on_fallback_headers(tracer, program):
    # ppid is read through task_struct offsets from BTF; wrong offsets show here.
    run = tracer(["execsnoop", "--json", "--comm", program.name])
    proc = subprocess.Popen(["sh", "-c", f'"{program}"; true'])
    proc.wait()
    run.stop()
    events = [e for e in run.json_lines() if "summary" not in e]
    assert [e["ppid"] for e in events] == [proc.pid]


def test_cut_text_is_marked_and_every_byte_comes_back(tracer, tmp_path):
    # argv entries of 127, 128 and 300 bytes: the last two are cut (to 127)
    # and marked; a 327-byte filename is cut to 255 and marked; a tab and
    # bytes that are not UTF-8 (in the name, so in comm too) come back exactly
    import os
    from tracers import decoders
    name = b"t\t" + unique_name("bx")[:12].encode()
    program = os.fsencode(tmp_path) + b"/" + name
    shutil.copy("/bin/true", os.fsdecode(program))
    args = [b"a" * 127, b"b" * 128, b"c" * 300, b"tab\there\xff\xef"]
    long_name = os.fsencode(tmp_path) + b"/" + b"d" * 100 + b"/"
    long_name += b"e" * (327 - len(long_name))
    run = tracer(["execsnoop", "--json"])
    subprocess.run([program, *args], check=True)
    try:
        subprocess.run([long_name])
    except OSError:
        pass
    assert run.stop() == 0
    recs = [r for r in run.json_lines() if "summary" not in r]
    (ours,) = [r for r in recs if decoders.unescape(r["filename"]) == program]
    assert decoders.unescape(ours["comm"]) == name
    assert [decoders.unescape(a) for a in ours["argv"]] == [program, args[0], args[1][:127], args[2][:127],
                                                             args[3]]
    assert (ours["argv_truncated"], ours["argv_more"], ours["args_truncated"], ours["filename_truncated"]) == \
        ([2, 3], False, True, False)
    (cut,) = [r for r in recs if decoders.unescape(r["filename"]) == long_name[:255]]
    assert (cut["filename_truncated"], cut["error"], len(long_name)) == (True, "ENOENT", 327)

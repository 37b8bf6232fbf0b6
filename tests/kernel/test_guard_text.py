"""guard's alert text on the host kernel: every byte comes back (escaped),
and every cut the kernel makes is marked, exactly at its bounds."""
import os
import shutil
import subprocess

import pytest

from test_guard import alerts, one_rule, short_dir  # noqa: F401 (short_dir: a fixture)
from tracers import decoders

pytestmark = pytest.mark.kernel

PATH_LEN = 256  # C: PATH_LEN and ARGS_LEN, NUL included


def prefix_rules(directory, kind: str) -> str:
    return one_rule(directory, "under_dir", kind, "low", "alert", f'path_prefix = ["{directory}/"]')


def test_exec_text_is_escaped_and_cut_paths_and_argv_are_marked(tracer, short_dir):
    # a tab, a byte that is not UTF-8 and a real U+FFFD in the name (so in comm
    # too); then a path and an argv longer than the kernel keeps
    base = os.fsencode(short_dir)
    name = b"t\tx\xff\xef\xbf\xbd"
    odd = base + b"/" + name
    shutil.copy("/bin/true", os.fsdecode(odd))
    deep = base + b"/" + b"d" * 100 + b"/" + b"e" * 100
    os.makedirs(deep)
    long = deep + b"/" + b"f" * 60
    shutil.copy("/bin/true", os.fsdecode(long))
    run = tracer(["guard", "--rules", prefix_rules(short_dir, "exec"), "--json"])
    subprocess.run([odd, b"a" * 300], check=True, timeout=30)
    subprocess.run([long], check=True, timeout=30)
    assert run.stop() == 0, run.stderr
    first, second = alerts(run)
    assert (decoders.unescape(first["comm"]), first["comm"]) == (name, "t\\x09x\\xff\ufffd")
    assert [decoders.unescape(first[k]) for k in ("path", "file")] == [odd, odd]
    assert [decoders.unescape(a) for a in first["argv"]] == [odd, b"a" * (PATH_LEN - 1 - len(odd) - 1)]
    assert (first["path_truncated"], first["file_truncated"], first["args_truncated"]) == (False, False, True)
    assert len(long) > PATH_LEN
    assert [decoders.unescape(second[k]) for k in ("path", "file")] == [long[:PATH_LEN - 1]] * 2
    assert [decoders.unescape(a) for a in second["argv"]] == [long[:PATH_LEN - 1]]
    assert (second["path_truncated"], second["file_truncated"], second["args_truncated"]) == (True, True, True)


def test_open_paths_are_cut_at_255_bytes_and_only_then_marked(tracer, short_dir):
    # the bound itself: 255 bytes fit (not cut), 256 do not (cut, marked);
    # the last, with a name over 255 bytes, fails but is seen at entry
    base = os.fsencode(short_dir) + b"/"
    paths = [base + b"p" * (n - len(base)) for n in (PATH_LEN - 1, PATH_LEN, PATH_LEN + 40)]
    run = tracer(["guard", "--rules", prefix_rules(short_dir, "open"), "--json"])
    for path in paths:
        with pytest.raises(OSError):
            os.open(path, os.O_RDONLY)
    assert run.stop() == 0, run.stderr
    got = [(decoders.unescape(a["path"]), a["path_truncated"]) for a in alerts(run)]
    assert got == [(paths[0], False), (paths[1][:PATH_LEN - 1], True), (paths[2][:PATH_LEN - 1], True)]

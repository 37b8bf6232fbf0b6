"""opensnoop on the host kernel: exact counts of a known workload."""
import os
import signal
import subprocess
import sys
import textwrap

import pytest

from conftest import ROOT, bpf_objects, unique_name, wait_gone

pytestmark = pytest.mark.kernel

OUR_PROGS = {"on_open_enter", "on_openat_enter", "on_openat2_enter", "on_open_exit"}

# 7 opens of a missing file (ENOENT), one that creates it, 11 that read it:
# 19 opens through open(2), openat(2) and openat2(2) in turn.
WORKLOAD = textwrap.dedent("""
    import ctypes, os, struct, sys
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    path = sys.argv[1].encode()
    AT_FDCWD = -100

    def do_open(i, flags):
        mode = 0o600 if flags & os.O_CREAT else 0  # openat2 refuses a stray mode
        how = ctypes.create_string_buffer(struct.pack("QQQ", flags, mode, 0))
        call = i % 3
        if call == 0:
            fd = libc.syscall(2, path, flags, 0o600)                  # open
        elif call == 1:
            fd = libc.syscall(257, AT_FDCWD, path, flags, 0o600)      # openat
        else:
            fd = libc.syscall(437, AT_FDCWD, path, how, 24)           # openat2
        if fd >= 0:
            os.close(fd)
        return fd

    results = [do_open(i, os.O_RDONLY) for i in range(7)]
    results.append(do_open(7, os.O_WRONLY | os.O_CREAT))
    results += [do_open(i, os.O_RDONLY) for i in range(8, 19)]
    assert sum(r < 0 for r in results) == 7, results
""")


@pytest.fixture
def short_dir():
    # Under 32 bytes, so the whole directory fits in --path-prefix.
    path = f"/tmp/{unique_name('bwos')}"
    os.mkdir(path)
    yield path
    subprocess.run(["rm", "-rf", path], check=True)


def test_exactly_19_opens_7_enoent(tracer, short_dir):
    # The child waits on stdin until both tracers are attached. The first
    # follows it by -p: opens of the whole machine (other tests compiling
    # BPF open thousands of headers) could fill the ring buffer.
    target = os.path.join(short_dir, "target")
    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()\n" + WORKLOAD,
                              target], stdin=subprocess.PIPE)
    everything = tracer(["opensnoop", "--json", "-p", str(child.pid)])
    failed = tracer(["opensnoop", "--json", "-x", "--path-prefix", short_dir + "/"])
    child.stdin.close()
    assert child.wait(30) == 0
    assert everything.stop() == 0 and failed.stop() == 0

    ours = [e for e in everything.json_lines() if e.get("path") == target]
    assert len(ours) == 19
    assert {e["pid"] for e in ours} == {child.pid}
    assert len([e for e in ours if e["error"] == "ENOENT"]) == 7
    assert all(e["ret"] == -2 for e in ours if e["error"])
    assert sorted(e["call"] for e in ours) == sorted(["open", "openat", "openat2"] * 6 + ["open"])
    created = [e for e in ours if e["flags_text"] == "O_WRONLY|O_CREAT"]
    assert len(created) == 1 and created[0]["ret"] >= 0
    assert all(e["flags_text"] == "O_RDONLY" for e in ours if e is not created[0])
    assert everything.json_lines()[-1]["summary"]["events_dropped"] == 0

    # -x with the prefix: the 7 failures, nothing else, from nobody else.
    only = [e for e in failed.json_lines() if "summary" not in e]
    assert len(only) == 7
    assert all(e["path"] == target and e["error"] == "ENOENT" for e in only)


def test_path_prefix_is_compared_bytewise(tracer, short_dir):
    prefix = short_dir + "/ab"  # not a multiple of 8 bytes: the last word is masked
    assert len(prefix) % 8 and len(prefix) <= 32
    run = tracer(["opensnoop", "--json", "--path-prefix", prefix])
    names = ["abc", "ab", "aX", "a", "abd/e", "b"]
    script = "import os, sys\nfor p in sys.argv[1:]:\n    try: os.close(os.open(p, os.O_RDONLY))\n" \
             "    except OSError: pass\n"
    subprocess.run([sys.executable, "-c", script, *[f"{short_dir}/{n}" for n in names]], check=True)
    run.stop()
    seen = [e["path"] for e in run.json_lines() if "summary" not in e]
    assert seen == [f"{short_dir}/abc", f"{short_dir}/ab", f"{short_dir}/abd/e"]


@pytest.mark.parametrize("args, words", [
    (["--path-prefix", ""], "must not be empty"),
    (["--path-prefix", "/" + "x" * 32], "at most 32 bytes"),
    (["-p", "0"], "positive"),
    (["--hook", "nope"], "invalid choice"),
])
def test_bad_input_gets_one_line(args, words):
    proc = subprocess.run([sys.executable, "-m", "tracers", "opensnoop", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert words in proc.stderr and "Traceback" not in proc.stderr


def test_forced_fexit_is_refused_in_one_line():
    # fentry/fexit programs are refused on this kernel: a clear error, no traceback.
    proc = subprocess.run([sys.executable, "-m", "tracers", "opensnoop", "--hook", "fexit"],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "fexit" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize("ending", ["SIGINT", "SIGTERM", "SIGKILL"])
def test_nothing_left_after(tracer, ending):
    before = bpf_objects(OUR_PROGS)
    run = tracer(["opensnoop", "--path-prefix", "/nonexistent/"])
    assert bpf_objects(OUR_PROGS)["prog"] - before["prog"], "opensnoop loaded no program?"
    assert run.stop(getattr(signal, ending)) == (-9 if ending == "SIGKILL" else 0)
    assert wait_gone(before, names=OUR_PROGS) == {"prog": set(), "link": set()}


# Each openat2 passes its struct open_how in a fresh file-backed mapping the
# caller never touches: at syscall entry the page is not mapped yet (a BPF
# read cannot fault it in), by the exit the kernel has copied it.
UNTOUCHED_HOW = textwrap.dedent("""
    import ctypes, mmap, os, struct, sys, tempfile
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    path, n = sys.argv[1].encode(), int(sys.argv[2])
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
    with tempfile.TemporaryFile() as f:
        f.write(struct.pack("QQQ", flags, 0o600, 0).ljust(mmap.PAGESIZE, b"\\0"))
        f.flush()
        for _ in range(n):
            m = mmap.mmap(f.fileno(), mmap.PAGESIZE)  # not touched before the call
            how = ctypes.c_char.from_buffer(m)
            fd = libc.syscall(437, -100, path, ctypes.c_void_p(ctypes.addressof(how)), 24)  # openat2
            assert fd >= 0, ctypes.get_errno()
            os.close(fd)
            del how
            m.close()
""")


def test_openat2_flags_from_an_untouched_page_are_read(tracer, short_dir):
    # 7 openat2 with O_WRONLY|O_CREAT|O_TRUNC: all 7 records say so
    target = os.path.join(short_dir, "how")
    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.readline()\n" + UNTOUCHED_HOW,
                              target, "7"], stdin=subprocess.PIPE, text=True)
    run = tracer(["opensnoop", "--json", "-p", str(child.pid)])
    child.communicate("go\n", timeout=30)
    assert child.returncode == 0
    assert run.stop() == 0
    ours = [e for e in run.json_lines() if e.get("path") == target]
    assert [(e["call"], e["flags_text"]) for e in ours] == [("openat2", "O_WRONLY|O_CREAT|O_TRUNC")] * 7


def test_long_and_hostile_paths_are_marked_and_recoverable(tracer, short_dir):
    # a 327-byte path is cut to 255 bytes and says so; 255 bytes is whole;
    # a tab and a byte that is not UTF-8 come back exactly from the JSON
    from tracers import decoders
    base = short_dir.encode() + b"/"
    long_path = base + b"d" * (327 - len(base))
    exact = base + b"e" * (255 - len(base))
    hostile = base + b"tab\there\xff\xefend"
    script = ("import os, sys\nsys.stdin.readline()\nfor p in sys.argv[1:]:\n"
              "    try: os.close(os.open(os.fsencode(p), os.O_RDONLY))\n    except OSError: pass\n")
    child = subprocess.Popen([sys.executable, "-c", script, *map(os.fsdecode, (long_path, exact, hostile))],
                             stdin=subprocess.PIPE, text=True)
    run = tracer(["opensnoop", "--json", "-p", str(child.pid), "--path-prefix", short_dir + "/"])
    child.communicate("go\n", timeout=30)
    assert run.stop() == 0
    got = [(decoders.unescape(e["path"]), e["path_truncated"]) for e in run.json_lines() if "path" in e]
    assert got == [(long_path[:255], True), (exact, False), (hostile, False)]
    assert (len(long_path), len(exact)) == (327, 255)

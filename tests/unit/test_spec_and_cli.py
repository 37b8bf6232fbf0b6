"""Spec validation, -D flag building, CLI parsing: no root, no bcc."""
import ctypes

import pytest

from tracers import options
from tracers.tools import execsnoop
from tracers.tools import syscount
from tracers.registry import tracer_classes
from tracers.runtime.loader import cflags_for, render_source
from tracers.spec import Hook, Metric


def test_entry_points_must_be_named_on():
    with pytest.raises(ValueError, match="on_<event>"):
        Hook("tracepoint", "a:b", "kprobe__x")
    with pytest.raises(ValueError, match="unknown hook kind"):
        Hook("nosuch", "a:b", "on_x")


def test_histogram_metric_needs_buckets():
    with pytest.raises(ValueError, match="exp2"):
        Metric("m", "h", map="x", kind="histogram")


@pytest.mark.parametrize("defines, flags", [
    ({"FILTER_PID": 42}, ["-DFILTER_PID=42"]),
    ({"B": 1, "A": -3}, ["-DA=-3", "-DB=1"]),
])
def test_cflags_are_integers_only(defines, flags):
    assert cflags_for(defines) == flags


@pytest.mark.parametrize("bad", [{"X": "1; evil()"}, {"X": 1.5}, {"x-y": 1}, {"X": True}])
def test_cflags_refuse_text(bad):
    with pytest.raises(ValueError):
        cflags_for(bad)


def test_comm_filter_packs_into_two_words():
    args = options.build_parser(execsnoop.TRACER()).parse_args(["--comm", "bash"])
    defines = options.common_defines(args)
    assert defines["FILTER_COMM_0"] == int.from_bytes(b"bash\0\0\0\0", "little")
    assert defines["FILTER_COMM_1"] == 0


def test_registry_finds_the_tracers():
    names = tracer_classes()
    assert {"execsnoop", "syscount"} <= set(names)
    for module in names.values():
        assert module.spec.examples, f"{module.spec.name} --help needs examples"
        if len(module.spec.alternatives) > 1:  # the C must know which one was chosen
            for alt in module.spec.alternatives:
                assert alt.define, f"{module.spec.name}/{alt.name} needs a define"


def test_render_source_lists_defines_first():
    text = render_source(syscount.SPEC, {"FILTER_SYSCALL": 257})
    assert text.splitlines()[1] == "#define FILTER_SYSCALL 257"
    assert "BPF_PERCPU_ARRAY(bpfwatch_stats" in text  # shared header prepended


def test_syscount_options_to_defines():
    parser = options.build_parser(syscount.TRACER())
    args = parser.parse_args(["-L", "-P", "--syscall", "openat", "2", "3"])
    assert syscount.TRACER().defines(args) == {"COUNT_AT_EXIT": 1, "PER_PROCESS": 1, "FILTER_SYSCALL": 257}
    assert syscount.TRACER().skip_hooks(args) == set()
    assert (args.interval, args.count) == (2.0, 3)
    plain = parser.parse_args([])
    assert syscount.TRACER().skip_hooks(plain) == {"on_sys_exit"}


class FakeExec(ctypes.Structure):
    _fields_ = [("ts", ctypes.c_uint64), ("cgroup_id", ctypes.c_uint64), ("pid", ctypes.c_uint32),
                ("ppid", ctypes.c_uint32),
                ("uid", ctypes.c_uint32), ("retval", ctypes.c_int32), ("argc", ctypes.c_uint32),
                ("argv_more", ctypes.c_uint32), ("argv_cut", ctypes.c_uint64),
                ("filename_truncated", ctypes.c_uint32), ("pad", ctypes.c_uint32),
                ("comm", ctypes.c_char * 16), ("filename", ctypes.c_char * 256),
                ("argv", ctypes.c_char * (20 * 128))]


def test_execsnoop_record_decodes_argv_and_bad_bytes():
    e = FakeExec(ts=2_000_000_000, pid=7, ppid=1, uid=0, retval=-2, argc=3, argv_more=1, argv_cut=0b100)
    e.comm = b"b\xffd"
    e.filename = b"/bin/x"
    raw = bytearray(20 * 128)
    for i, arg in enumerate([b"x", b"", b"two words"]):
        raw[i * 128:i * 128 + len(arg)] = arg
    ctypes.memmove(ctypes.addressof(e) + FakeExec.argv.offset, bytes(raw), len(raw))
    rec = execsnoop.to_record(e, boot_offset=100.0)
    assert rec["argv"] == ["x", "", "two words"]
    assert rec["comm"] == "b\\xffd"  # escaped: the byte comes back (decoders.unescape)
    assert (rec["argv_truncated"], rec["argv_more"], rec["args_truncated"]) == ([2], True, True)
    assert rec["filename_truncated"] is False
    assert rec["error"] == "ENOENT" and rec["time"] == 102.0
    assert execsnoop.format_line(rec).endswith("/bin/x  x  two words… ...")

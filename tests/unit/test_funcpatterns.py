"""funccount/funclatency patterns and the per-run spec."""
import pytest

from tracers.spec import UsageError

from tracers import options
from tracers.tools import funccount
from tracers.tools import funclatency
from tracers.tools.funccount import Pattern, glob_regex, match, parse_pattern

@pytest.mark.parametrize("text, want", [
    ("vfs_read", Pattern("kernel", "", "", "vfs_read")),
    ("k:tcp_*", Pattern("kernel", "", "", "tcp_*")),
    ("foo.isra.0", Pattern("kernel", "", "", "foo.isra.0")),
    ("t:sched:sched_*", Pattern("tracepoint", "", "sched", "sched_*")),
    ("t:*:*_exec", Pattern("tracepoint", "", "*", "*_exec")),
    ("c:malloc", Pattern("user", "c", "", "malloc")),
    ("/usr/lib/libssl.so.3:SSL_*", Pattern("user", "/usr/lib/libssl.so.3", "", "SSL_*")),
    ("./a.out:main", Pattern("user", "./a.out", "", "main")),
])
def test_parse_pattern(text, want):
    assert parse_pattern(text) == want


@pytest.mark.parametrize("text", [
    "", "k:", "vfs read", "vfs_read;", "t:sched", "t:sched:", "t:a:b:c", "t:sc hed:x",
    ":malloc", "c:", "*:malloc", "c:mal loc", "u:lib:probe", "a:b:c", "vfs_$(reboot)",
])
def test_bad_patterns_are_refused(text):
    with pytest.raises(ValueError):
        parse_pattern(text)


@pytest.mark.parametrize("pattern, names, want", [
    ("vfs_*", ["vfs_read", "vfs_write", "do_vfs", "vfs_read"], ["vfs_read", "vfs_write"]),
    ("vfs_?ead", ["vfs_read", "vfs_rread", "vfs_xead"], ["vfs_read", "vfs_xead"]),
    ("*", ["a", "b"], ["a", "b"]),
    ("a.b", ["a.b", "aXb"], ["a.b"]),  # dots are literal
    ("exact", ["exact", "exactly", "inexact"], ["exact"]),
])
def test_glob_match(pattern, names, want):
    assert match(names, pattern) == want


def test_glob_regex_escapes_everything_but_wildcards():
    assert glob_regex("a+b*").match("a+bcd") and not glob_regex("a+b*").match("aab")


def test_counts_by_probe_index_sorted_by_count_then_name():
    table = funccount.counts_table(["a", "b", "c", "d"], top=None)
    # per-CPU counts by cookie; index 9 is no probe of ours and is left out
    before = table.read([(0, [4, 0]), (2, [3, 0]), (3, [0, 0])])
    now = table.read([(0, [6, 4]), (1, [7, 0]), (2, [1, 2]), (3, [5, 0]), (9, [1, 1])])
    assert [(r["probe"], r["count"]) for r in table.rows(now, before)] == [("b", 7), ("a", 6), ("d", 5)]


def parse(module, argv):
    parser = options.build_parser(module.TRACER())
    return parser.parse_intermixed_args(argv)


def test_funccount_per_run_spec_has_one_hook_per_target_and_fitting_alternatives():
    args = parse(funccount, ["vfs_*", "--json", "1", "3"])
    tracer = funccount.TRACER()
    tracer.targets = funccount.Targets(parse_pattern("vfs_*"), ["vfs_read", "vfs_write"],
                                       ["vfs_read", "vfs_write"])
    assert tracer.defines(args) == {"NPROBES": 2}
    spec = tracer.session_spec(args)
    assert [a.name for a in spec.alternatives] == ["fentry", "kprobe"]
    assert [(h.kind, h.target, h.optional) for h in spec.alternative("kprobe").hooks] == \
        [("kprobe", "vfs_read", True), ("kprobe", "vfs_write", True)]
    assert spec.alternative("fentry").needs == ("fentry",)
    assert (args.interval, args.count) == (1.0, 3)


def test_funccount_refuses_a_hook_that_does_not_fit_the_pattern():
    args = parse(funccount, ["--hook", "kprobe", "t:sched:*"])
    with pytest.raises(UsageError, match="--hook kprobe does not fit tracepoint pattern"):
        funccount.resolve(args)


@pytest.mark.parametrize("text, want", [
    ("do_sys_openat2", ("kernel", "do_sys_openat2")),
    ("c:malloc", ("user", "c:malloc")),
    ("/lib/x86_64-linux-gnu/libc.so.6:free", ("user", "/lib/x86_64-linux-gnu/libc.so.6:free")),
])
def test_funclatency_function(text, want):
    assert funclatency.parse_function(text) == want


@pytest.mark.parametrize("text", ["vfs_*", "c:mal*", ":x", "c:", "bad name", "x;y"])
def test_funclatency_refuses_patterns_and_junk(text):
    with pytest.raises(ValueError):
        funclatency.parse_function(text)


def test_funclatency_units_and_alternatives():
    args = parse(funclatency, ["-u", "vfs_read"])
    assert funclatency.TRACER().defines(args) == {"UNIT_NS": 1000, "MAX_DEPTH": 32}
    assert [a.name for a in funclatency.TRACER().session_spec(args).alternatives] == ["fentry", "kprobe"]
    user = parse(funclatency, ["-m", "c:nanosleep", "5"])
    assert funclatency.TRACER().defines(user) == {"UNIT_NS": 1_000_000, "MAX_DEPTH": 32}
    hooks = funclatency.TRACER().session_spec(user).alternative("uprobe").hooks
    assert [(h.kind, h.target, h.fn) for h in hooks] == \
        [("uprobe", "c:nanosleep", "on_entry"), ("uretprobe", "c:nanosleep", "on_return")]
    with pytest.raises(UsageError, match="--hook kprobe does not fit user function"):
        funclatency.TRACER().session_spec(parse(funclatency, ["--hook", "kprobe", "c:nanosleep"]))


def test_user_targets_one_per_address_aliases_joined():
    addresses = {"__GI_getppid": 0xd54f0, "__getppid": 0xd54f0, "getppid": 0xd54f0,
                 "__GI___getppid": 0xd54f0, "getpid": 0xd5400, "other": 0x100}
    targets, names = funccount.user_targets("/lib/libc.so.6", addresses, "*get*pid")
    assert targets == ["/lib/libc.so.6:getppid", "/lib/libc.so.6:getpid"]
    assert names == ["/lib/libc.so.6:getppid|__getppid|__GI_getppid|__GI___getppid",
                     "/lib/libc.so.6:getpid"]

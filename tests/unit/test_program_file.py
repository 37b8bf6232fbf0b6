"""User program files: the shipped examples load; bad files name the field."""
import ctypes
import tempfile
from pathlib import Path

import pytest

from exporters import program
from exporters.program import ProgramError
from tracers.runtime.loader import c_source

EXAMPLES = Path(__file__).resolve().parents[2] / "exporters" / "examples"

GOOD = """
name = "errs"
c_file = "prog.bpf.c"
defines = { MAX_ENTRIES = 128 }
[[alternatives]]
name = "tp"
define = "HOOK_TP"
hooks = [{ kind = "tracepoint", target = "raw_syscalls:sys_exit", fn = "on_sys_exit" }]
[[metrics]]
name = "errs_total"
help = "Errors."
map = "errors"
labels = [{ name = "errno", field = "err", decoder = "errno_name" }]
"""
C_TEXT = "BPF_HASH(errors, u32, u64);\nBPF_HASH(sizes, u32, u64);\nint on_sys_exit(void *ctx) { return 0; }\n"


def write(tmp_path, text, c_text=C_TEXT):
    (tmp_path / "prog.bpf.c").write_text(c_text)
    path = tmp_path / "prog.toml"
    path.write_text(text)
    return str(path)


def test_examples_load_into_tracer_specs():
    spec, defines = program.load(str(EXAMPLES / "syscall_errors.toml"))
    assert spec.name == "syscall_errors" and defines == {"MAX_ENTRIES": 4096}
    assert [a.name for a in spec.alternatives] == ["raw_tracepoint", "tracepoint"]
    assert spec.alternatives[0].define == "HOOK_RAW_TRACEPOINT"
    (m,) = spec.metrics
    assert (m.name, m.kind, m.map) == ("syscall_errors_total", "counter", "errors")
    assert [(l.name, l.field, l.decoder) for l in m.labels] == [
        ("syscall", "nr", "syscall_name"), ("errno", "err", "errno_name")]
    spec, _ = program.load(str(EXAMPLES / "read_sizes.toml"))
    (m,) = spec.metrics
    assert (m.kind, m.buckets, m.bucket_field, m.sum_map, m.multiplier) == (
        "histogram", "exp2", "slot", "read_bytes", 1.0)
    assert spec.alternatives[1].hooks[0].kind == "kretprobe"


def test_the_loader_reads_the_users_c_file(tmp_path):
    spec, _ = program.load(write(tmp_path, GOOD))
    assert Path(spec.c_file).is_absolute()
    assert c_source(spec).endswith(C_TEXT)  # after the shared header


@pytest.mark.parametrize("change, message", [
    (("name = \"errs\"", "name = \"Errs\""), "name: must match"),
    (("c_file = \"prog.bpf.c\"", "c_file = \"nope.c\""), "c_file: cannot read"),
    (("MAX_ENTRIES = 128", "MAX_ENTRIES = \"128\""), "defines.MAX_ENTRIES: defines are NAME = integer"),
    (("kind = \"tracepoint\"", "kind = \"tracepnt\""), "alternatives[0].hooks[0].kind: unknown hook kind 'tracepnt'"),
    (("kind = \"tracepoint\"", "kind = \"xdp\""), "alternatives[0].hooks[0].kind: xdp hooks need a tracer module"),
    (("fn = \"on_sys_exit\"", "fn = \"sys_exit\""), "alternatives[0].hooks[0].fn: entry points are named on_<event>"),
    (("fn = \"on_sys_exit\"", "fn = \"on_sys_enter\""), "hooks[0].fn: entry point 'on_sys_enter' does not appear"),
    (("hooks = [{", "hooks = [{ optional = 1, "), "hooks[0].optional: must be a bool, got int"),
    (("map = \"errors\"", "map = \"errrors\""), "metrics[0].map: map 'errrors' does not appear in the C file"),
    (("help = \"Errors.\"\n", ""), "metrics[0].help: missing"),
    (("help = \"Errors.\"", "help = \"Errors.\"\nkind = \"summary\""), "metrics[0].kind: must be counter, gauge or histogram"),
    (("help = \"Errors.\"", "help = \"Errors.\"\nkind = \"histogram\""), "metrics[0].buckets: a histogram needs buckets"),
    (("help = \"Errors.\"", "help = \"Errors.\"\nbuckets = \"exp2\""), "metrics[0].kind: bucket settings need kind"),
    (("help = \"Errors.\"", "help = \"Errors.\"\nkind = \"histogram\"\nbuckets = \"exp2\"\nmultiplier = 0"),
     "metrics[0].multiplier: must be a positive finite number"),
    (("decoder = \"errno_name\"", "decoder = \"errno\""), "metrics[0].labels[0].decoder: unknown decoder 'errno'"),
    (("name = \"errno\"", "name = \"le\""), "metrics[0].labels[0].name: must match"),
    (("help = \"Errors.\"", "help = \"Errors.\"\nlables = []"), "metrics[0].lables: unknown field"),
    (("[[metrics]]", "[[metric]]"), "metric: unknown field"),
    (("name = \"errs\"", "name = \"errs\nname = \"x\""), "not valid TOML"),
])
def test_bad_files_name_the_field(tmp_path, change, message):
    old, new = change
    assert old in GOOD
    path = write(tmp_path, GOOD.replace(old, new, 1))
    with pytest.raises(ProgramError) as err:
        program.load(path)
    assert str(err.value).startswith(f"program {path}: ")
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_empty_lists_are_refused(tmp_path):
    for old, new, message in (('[[alternatives]]\nname = "tp"\ndefine = "HOOK_TP"\nhooks = [{ kind = "tracepoint", '
                               'target = "raw_syscalls:sys_exit", fn = "on_sys_exit" }]\n', 'alternatives = []\n',
                               "alternatives: needs at least one"),):
        with pytest.raises(ProgramError, match=message):
            program.load(write(tmp_path, GOOD.replace(old, new)))
    with pytest.raises(ProgramError, match="cannot read"):
        program.load(str(tmp_path / "absent.toml"))


@pytest.mark.parametrize("change, message", [
    (("hooks = [{", "needs = [\"warpdrive\"]\nhooks = [{"), "alternatives[0].needs[0]: unknown kernel feature 'warpdrive'"),
    (("hooks = [{", "needs = [1]\nhooks = [{"), "alternatives[0].needs[0]: unknown kernel feature 1"),
    (("name = \"errs_total\"", "name = \"errs_total\\n\""), "metrics[0].name: contains a control character"),
    (("name = \"errs\"", "name = \"errs\\n\""), "name: contains a control character"),
    (("name = \"errno\"", "name = \"errno\\n\""), "metrics[0].labels[0].name: contains a control character"),
    (("field = \"err\"", "field = \"err\\n\""), "metrics[0].labels[0].field: contains a control character"),
    (("field = \"err\"", "field = \"e-rr\""), "metrics[0].labels[0].field: must match a C identifier"),
    (("MAX_ENTRIES = 128", "\"MAX_ENTRIES\\n\" = 128"), "defines.MAX_ENTRIES\\n: defines are NAME = integer"),
    (("name = \"tp\"", "name = \"tp one\""), "alternatives[0].name: must match"),
    (("target = \"raw_syscalls:sys_exit\"", "target = \"sys_exit\""), "hooks[0].target: must match the form of a tracepoint"),
    (("help = \"Errors.\"", "help = \"Errors.\"\nkind = \"histogram\"\nbuckets = \"exp2\"\nmultiplier = nan"),
     "metrics[0].multiplier: must be a positive finite number, got nan"),
    (("help = \"Errors.\"", "help = \"Errors.\"\nkind = \"histogram\"\nbuckets = \"exp2\"\nmultiplier = inf"),
     "metrics[0].multiplier: must be a positive finite number, got inf"),
    (("help = \"Errors.\"", "help = \"Errors.\"\nkind = \"histogram\"\nbuckets = \"exp2\"\nmultiplier = true"),
     "metrics[0].multiplier: must be a number, got bool"),
    (("help = \"Errors.\"", "help = \"Errors.\"\nmultiplier = 2"), "metrics[0].kind: bucket settings need kind"),
    (("labels = [{ name = \"errno\"", "labels = [{ name = \"x\", field = \"err\" }, { name = \"x\""),
     "metrics[0].labels[1].name: must match [a-z][a-z0-9_]*, be unique"),
])
def test_names_and_numbers_are_validated_whole(tmp_path, change, message):
    old, new = change
    assert old in GOOD
    path = write(tmp_path, GOOD.replace(old, new, 1))
    with pytest.raises(ProgramError) as err:
        program.load(path)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_files_that_are_not_regular_or_not_utf8_are_refused_without_blocking(tmp_path):
    import os
    path = write(tmp_path, GOOD)
    os.unlink(tmp_path / "prog.bpf.c")
    os.mkfifo(tmp_path / "prog.bpf.c")  # opening it blocking would wait for a writer forever
    with pytest.raises(ProgramError, match=r"c_file: cannot read '.*prog.bpf.c': not a regular file"):
        program.load(path)
    os.unlink(tmp_path / "prog.bpf.c")
    (tmp_path / "prog.bpf.c").mkdir()
    with pytest.raises(ProgramError, match="c_file: cannot read .*: is a directory"):
        program.load(path)
    os.rmdir(tmp_path / "prog.bpf.c")
    (tmp_path / "prog.bpf.c").write_bytes(C_TEXT.encode() + b"// \xff\n")
    with pytest.raises(ProgramError, match=r"c_file: cannot read .*: not UTF-8 text \(byte 0xff on line 4\)"):
        program.load(path)
    (tmp_path / "prog.toml").write_bytes(GOOD.encode().replace(b"Errors.", b"Err\xfe"))
    with pytest.raises(ProgramError, match=r"prog.toml: cannot read: not UTF-8 text \(byte 0xfe on line 11\)"):
        program.load(path)
    os.unlink(path)
    os.mkfifo(path)
    with pytest.raises(ProgramError, match="prog.toml: cannot read: not a regular file"):
        program.load(path)


def test_odd_characters_in_the_path_reach_no_c_source(tmp_path):
    odd = tmp_path / 'inj\n#error X "q\\'
    odd.mkdir()
    spec, _ = program.load(write(odd, GOOD))
    source = c_source(spec)
    assert "#error X" not in source and str(odd) not in source
    assert '#line 1 "prog.bpf.c"\n' in source  # the plain file name still names it in messages


# -- against the compiled maps (fake tables shaped like BCC's) --------------------------
class ErrKey(ctypes.Structure):
    _fields_ = [("nr", ctypes.c_uint32), ("err", ctypes.c_uint32)]


class Stats(ctypes.Structure):
    _fields_ = [("count", ctypes.c_uint64), ("total_ns", ctypes.c_uint64)]


class Table:
    def __init__(self, key, leaf, percpu=False):
        self.Key = key
        if percpu:
            self.sLeaf, self.Leaf = leaf, leaf * 4
        else:
            self.Leaf = leaf


def check(metric_toml: str, tables: dict):
    text = GOOD.split("[[metrics]]")[0] + "[[metrics]]\n" + metric_toml
    with tempfile.TemporaryDirectory() as d:
        spec, _ = program.load(write(Path(d), text, C_TEXT + "// errors sizes\n"))
    return program.check_maps(spec, tables.__getitem__)


LABELLED = 'name = "errs_total"\nhelp = "E."\nmap = "errors"\nlabels = [{ name = "errno", field = "err" }]\n'


@pytest.mark.parametrize("metric, tables, problem", [
    (LABELLED, {"errors": Table(ErrKey, ctypes.c_uint64)}, None),
    (LABELLED, {"errors": Table(ErrKey, ctypes.c_uint64, percpu=True)}, None),
    (LABELLED, {}, ("metrics[0].map", "the program has no map 'errors'")),
    (LABELLED.replace('"err" }', '"errr" }'), {"errors": Table(ErrKey, ctypes.c_uint64)},
     ("metrics[0].labels[0].field", "the key of map errors (struct ErrKey (fields: nr, err)) has no field 'errr'")),
    (LABELLED, {"errors": Table(ctypes.c_uint32, ctypes.c_uint64)},
     ("metrics[0].labels[0].field", "the key of map errors is c_uint, not a struct with field 'err'")),
    (LABELLED, {"errors": Table(ErrKey, Stats)},
     ("metrics[0].value_field", "the value of map errors is struct Stats (fields: count, total_ns), "
                                "not an integer: name one of its fields with value_field")),
    (LABELLED + 'value_field = "count"\n', {"errors": Table(ErrKey, Stats, percpu=True)}, None),
    (LABELLED + 'value_field = "cnt"\n', {"errors": Table(ErrKey, Stats)},
     ("metrics[0].value_field", "the value of map errors (struct Stats (fields: count, total_ns)) has no field 'cnt'")),
    (LABELLED + 'kind = "histogram"\nbuckets = "exp2"\n', {"errors": Table(ErrKey, ctypes.c_uint64)},
     ("metrics[0].bucket_field", "the key of map errors (struct ErrKey (fields: nr, err)) has no bucket field 'slot'")),
    ('name = "h"\nhelp = "H."\nmap = "errors"\nkind = "histogram"\nbuckets = "exp2"\n',
     {"errors": Table(ctypes.c_uint32, ctypes.c_uint64)}, None),  # a scalar key is the slot
    (LABELLED + 'kind = "histogram"\nbuckets = "exp2"\nbucket_field = "nr"\nsum_map = "sizes"\n',
     {"errors": Table(ErrKey, ctypes.c_uint64), "sizes": Table(ctypes.c_uint32, ctypes.c_uint64)},
     ("metrics[0].labels[0].field", "the key of sum_map sizes is c_uint, not a struct with field 'err'")),
])
def test_metrics_are_checked_against_the_loaded_maps(metric, tables, problem):
    assert check(metric, tables) == problem

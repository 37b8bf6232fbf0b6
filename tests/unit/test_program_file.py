"""User program files: the shipped examples load; bad files name the field."""
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
     "metrics[0].multiplier: must be positive"),
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

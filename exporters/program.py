"""User-written programs: a BCC C file plus a TOML file that declares it.

    name = "syscall_errors"             # [a-z][a-z0-9_]*, unique
    summary = "failed syscalls by syscall and errno"
    c_file = "syscall_errors.bpf.c"     # relative to this file
    defines = { MAX_ENTRIES = 4096 }    # optional integer -D defines

    [[alternatives]]                    # best first; the first usable one runs
    name = "raw_tracepoint"
    define = "HOOK_RAW_TRACEPOINT"      # optional: -D<define>=1
    hooks = [{ kind = "raw_tracepoint", target = "sys_exit", fn = "on_sys_exit" }]
    needs = ["ringbuf"]                 # optional: kernel features (bpfwatch doctor)

    [[metrics]]
    name = "syscall_errors_total"       # served as bpfwatch_<name>
    kind = "counter"                    # counter | gauge | histogram
    help = "Failed syscalls."
    map = "errors"
    labels = [{ name = "syscall", field = "nr", decoder = "syscall_name" }]

Histograms add buckets = "exp2" | "linear", bucket_field, bucket_width,
multiplier and sum_map. The result is an ordinary TracerSpec run by the same
runtime as the built-in tracers. Everything is checked before anything is
loaded; what needs the compiled maps (key and value fields) is checked by
check_maps() right after loading, before anything is served. Errors name the
file and the field, in one line.
"""
from __future__ import annotations

import ctypes
import math
import os
import re
import tomllib

from exporters.files import CONTROL, InputFileError, one_line, read_regular, utf8
from tracers.decoders import DECODERS
from tracers.runtime.errors import BpfwatchError
from tracers.runtime.features import ORDER as FEATURES
from tracers.spec import HOOK_KINDS, Alternative, Hook, Label, Metric, TracerSpec

# fullmatch everywhere: `$` would let a final newline through.
NAME = re.compile(r"[a-z][a-z0-9_]*")
DEFINE = re.compile(r"[A-Z][A-Z0-9_]*")
C_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
TOP = {"name": str, "summary": str, "c_file": str, "defines": dict, "alternatives": list,
       "metrics": list}
ALTERNATIVE = {"name": str, "define": str, "hooks": list, "needs": list}
HOOK = {"kind": str, "target": str, "fn": str, "optional": bool}
METRIC = {"name": str, "kind": str, "help": str, "map": str, "labels": list, "value_field": str,
          "buckets": str, "bucket_field": str, "bucket_width": int, "multiplier": (int, float),
          "sum_map": str}
LABEL = {"name": str, "field": str, "decoder": str}
REQUIRED = {"top": ("name", "c_file", "alternatives", "metrics"), "alternative": ("name", "hooks"),
            "hook": ("kind", "target", "fn"), "metric": ("name", "help", "map"), "label": ("name",)}
# Hook targets: what each kind names (a uprobe's library path may hold anything printable).
TARGET = {"tracepoint": re.compile(r"[A-Za-z0-9_]+:[A-Za-z0-9_]+"),
          "raw_tracepoint": re.compile(r"[A-Za-z0-9_]+"),
          "kprobe": re.compile(r"(syscall:)?[A-Za-z0-9_.]+"),
          "uprobe": re.compile(r"[^:]+:[A-Za-z_][A-Za-z0-9_.@]*")}
TARGET.update(kretprobe=TARGET["kprobe"], fentry=TARGET["kprobe"], fexit=TARGET["kprobe"],
              uretprobe=TARGET["uprobe"])


class ProgramError(BpfwatchError):
    pass


class _Bad(Exception):
    def __init__(self, where: str, why: str):
        super().__init__(where, why)
        self.where, self.why = where, why


def _type_name(want) -> str:
    return want.__name__ if isinstance(want, type) else "number"


def _table(where: str, data, schema: dict, required: tuple) -> dict:
    if not isinstance(data, dict):
        raise _Bad(where or "top level", "must be a table")
    prefix = f"{where}." if where else ""
    for key, value in data.items():
        if key not in schema:
            raise _Bad(prefix + key, f"unknown field (known: {', '.join(schema)})")
        want = schema[key]
        if not isinstance(value, want) or (want is not bool and isinstance(value, bool)):
            raise _Bad(prefix + key, f"must be a {_type_name(want)}, got {type(value).__name__}")
        if isinstance(value, str) and CONTROL.search(value):
            raise _Bad(prefix + key, "contains a control character (a newline?)")
    for key in required:
        if key not in data:
            raise _Bad(prefix + key, "missing")
    return data


def _matching(where: str, value: str, pattern: re.Pattern, shape: str) -> str:
    if not pattern.fullmatch(value):
        raise _Bad(where, f"must match {shape}, got {value!r}")
    return value


def _c_name(where: str, value: str, c_text: str, what: str) -> str:
    _matching(where, value, C_IDENT, "a C identifier")
    if not re.search(rf"\b{re.escape(value)}\b", c_text):
        raise _Bad(where, f"{what} {value!r} does not appear in the C file")
    return value


def _read_c_file(base: str, name: str) -> tuple[str, str]:
    path = os.path.join(base, name)
    try:
        return path, utf8(read_regular(path))
    except InputFileError as exc:
        raise _Bad("c_file", f"cannot read {path!r}: {exc}") from None


def _alternative(where: str, raw, c_text: str) -> Alternative:
    alt = _table(where, raw, ALTERNATIVE, REQUIRED["alternative"])
    _matching(f"{where}.name", alt["name"], NAME, "[a-z][a-z0-9_]*")
    if alt.get("define"):
        _matching(f"{where}.define", alt["define"], DEFINE, "[A-Z][A-Z0-9_]*")
    if not alt["hooks"]:
        raise _Bad(f"{where}.hooks", "needs at least one hook")
    hooks = []
    for j, raw_hook in enumerate(alt["hooks"]):
        hw = f"{where}.hooks[{j}]"
        h = _table(hw, raw_hook, HOOK, REQUIRED["hook"])
        if h["kind"] not in HOOK_KINDS:
            raise _Bad(f"{hw}.kind", f"unknown hook kind {h['kind']!r} (known: {', '.join(HOOK_KINDS)})")
        if h["kind"] not in TARGET:
            raise _Bad(f"{hw}.kind", f"{h['kind']} hooks need a tracer module; programs take "
                       "tracepoints, raw tracepoints, kprobes, fentry and uprobes")
        _matching(f"{hw}.target", h["target"], TARGET[h["kind"]], f"the form of a {h['kind']} target")
        if not h["fn"].startswith("on_"):
            raise _Bad(f"{hw}.fn", "entry points are named on_<event>")
        _c_name(f"{hw}.fn", h["fn"], c_text, "entry point")
        hooks.append(Hook(h["kind"], h["target"], h["fn"], h.get("optional", False)))
    needs = alt.get("needs", [])
    for j, need in enumerate(needs):
        if not isinstance(need, str) or need not in FEATURES:
            raise _Bad(f"{where}.needs[{j}]", f"unknown kernel feature {need!r} (known: {', '.join(FEATURES)})")
    return Alternative(alt["name"], tuple(hooks), alt.get("define", ""), needs=tuple(needs))


def _metric(where: str, raw, c_text: str) -> Metric:
    m = _table(where, raw, METRIC, REQUIRED["metric"])
    _matching(f"{where}.name", m["name"], NAME, "[a-z][a-z0-9_]*")
    kind = m.get("kind", "counter")
    if kind not in ("counter", "gauge", "histogram"):
        raise _Bad(f"{where}.kind", f"must be counter, gauge or histogram, got {kind!r}")
    if kind == "histogram" and m.get("buckets") not in ("exp2", "linear"):
        raise _Bad(f"{where}.buckets", "a histogram needs buckets = \"exp2\" or \"linear\"")
    if kind != "histogram" and ({"buckets", "bucket_field", "bucket_width", "sum_map", "multiplier"} & set(m)):
        raise _Bad(f"{where}.kind", "bucket settings need kind = \"histogram\"")
    if m.get("bucket_width", 1) < 1:
        raise _Bad(f"{where}.bucket_width", "must be positive")
    multiplier = float(m.get("multiplier", 1.0))
    if not math.isfinite(multiplier) or multiplier <= 0:
        raise _Bad(f"{where}.multiplier", f"must be a positive finite number, got {multiplier}")
    _c_name(f"{where}.map", m["map"], c_text, "map")
    if m.get("sum_map"):
        _c_name(f"{where}.sum_map", m["sum_map"], c_text, "map")
    for key in ("value_field", "bucket_field"):
        if key in m:
            _matching(f"{where}.{key}", m[key], C_IDENT, "a C identifier")
    labels, names = [], set()
    for j, raw_label in enumerate(m.get("labels", [])):
        lw = f"{where}.labels[{j}]"
        lab = _table(lw, raw_label, LABEL, REQUIRED["label"])
        if not NAME.fullmatch(lab["name"]) or lab["name"] == "le" or lab["name"] in names:
            raise _Bad(f"{lw}.name", "must match [a-z][a-z0-9_]*, be unique and not be 'le'")
        names.add(lab["name"])
        if lab.get("field"):
            _matching(f"{lw}.field", lab["field"], C_IDENT, "a C identifier")
        decoder = lab.get("decoder", "int")
        if decoder not in DECODERS:
            raise _Bad(f"{lw}.decoder", f"unknown decoder {decoder!r} (known: {', '.join(sorted(DECODERS))})")
        labels.append(Label(lab["name"], lab.get("field", ""), decoder))
    return Metric(m["name"], m["help"], m["map"], kind, tuple(labels), m.get("value_field", ""),
                  m.get("buckets", ""), m.get("bucket_field", "slot"), m.get("bucket_width", 1),
                  multiplier, m.get("sum_map", ""))


def _spec(data, base: str) -> tuple[TracerSpec, dict[str, int]]:
    top = _table("", data, TOP, REQUIRED["top"])
    _matching("name", top["name"], NAME, "[a-z][a-z0-9_]*")
    c_path, c_text = _read_c_file(base, top["c_file"])
    defines = {}
    for key, value in top.get("defines", {}).items():
        if not DEFINE.fullmatch(key) or isinstance(value, bool) or not isinstance(value, int):
            raise _Bad(f"defines.{key}", "defines are NAME = integer (NAME in [A-Z][A-Z0-9_]*)")
        defines[key] = value
    if not top["alternatives"]:
        raise _Bad("alternatives", "needs at least one [[alternatives]] entry")
    alternatives = [_alternative(f"alternatives[{i}]", raw, c_text) for i, raw in enumerate(top["alternatives"])]
    if not top["metrics"]:
        raise _Bad("metrics", "needs at least one [[metrics]] entry")
    metrics, seen = [], set()
    for i, raw in enumerate(top["metrics"]):
        metric = _metric(f"metrics[{i}]", raw, c_text)
        if metric.name in seen:
            raise _Bad(f"metrics[{i}].name", f"{metric.name!r} is already a metric of this program")
        seen.add(metric.name)
        metrics.append(metric)
    # An absolute c_file: the loader reads it as is (pathlib joins absolute paths so).
    spec = TracerSpec(name=top["name"], summary=top.get("summary", top["name"]),
                      c_file=os.path.abspath(c_path), alternatives=tuple(alternatives),
                      metrics=tuple(metrics))
    return spec, defines


def load(path: str) -> tuple[TracerSpec, dict[str, int]]:
    """(spec, defines) from a program's TOML file; ProgramError names the field."""
    try:
        data = tomllib.loads(utf8(read_regular(path)))
    except InputFileError as exc:
        raise ProgramError(one_line(f"program {path}: cannot read: {exc}")) from None
    except tomllib.TOMLDecodeError as exc:
        raise ProgramError(one_line(f"program {path}: not valid TOML: {exc}")) from None
    try:
        return _spec(data, os.path.dirname(os.path.abspath(path)))
    except _Bad as bad:
        raise ProgramError(one_line(f"program {path}: {bad.where}: {bad.why}")) from None


# -- against the compiled maps -------------------------------------------------------
def _fields(ctype) -> list[str]:
    return [f[0] for f in getattr(ctype, "_fields_", ())]


def _element(table):
    """The value type of one CPU's copy (BCC makes per-CPU values arrays)."""
    return getattr(table, "sLeaf", table.Leaf)


def _is_struct(ctype) -> bool:
    return isinstance(ctype, type) and issubclass(ctype, (ctypes.Structure, ctypes.Union))


def _describe(ctype) -> str:
    if _is_struct(ctype):
        return f"struct {ctype.__name__} (fields: {', '.join(_fields(ctype)) or 'none'})"
    return getattr(ctype, "__name__", "a scalar")


def _key_problem(owner: str, key_type, field: str, what: str) -> str | None:
    if not _is_struct(key_type):
        return f"the key of {owner} is {_describe(key_type)}, not a struct with {what} {field!r}"
    if not hasattr(key_type, field):
        return f"the key of {owner} ({_describe(key_type)}) has no {what} {field!r}"
    return None


def _value_problem(owner: str, value_type, field: str) -> str | None:
    if field:
        if not _is_struct(value_type) or not hasattr(value_type, field):
            return f"the value of {owner} ({_describe(value_type)}) has no field {field!r}"
        value_type = dict((f[0], f[1]) for f in value_type._fields_)[field]
    if not (isinstance(value_type, type) and issubclass(value_type, ctypes._SimpleCData)
            and value_type._type_ in "bBhHiIlLqQ?"):
        return (f"the value of {owner} is {_describe(value_type)}, not an integer"
                + ("" if field else ": name one of its fields with value_field"))
    return None


def check_maps(spec: TracerSpec, table_of) -> tuple[str, str] | None:
    """(where, why) of the first metric the loaded maps cannot serve, else None.

    table_of(name) -> the BCC table (KeyError when the program has no such
    map). A scrape would otherwise fail on every read of that metric."""
    for i, m in enumerate(spec.metrics):
        where = f"metrics[{i}]"
        tables = {}
        for key in ("map", "sum_map"):
            name = getattr(m, key)
            if not name:
                continue
            try:
                tables[key] = table_of(name)
            except KeyError:
                return f"{where}.{key}", f"the program has no map {name!r}"
        table = tables["map"]
        owner = f"map {m.map}"
        for j, label in enumerate(m.labels):
            for key in ("map", "sum_map") if label.field else ():
                why = key in tables and _key_problem(f"{key} {getattr(m, key)}", tables[key].Key,
                                                     label.field, "field")
                if why:
                    return f"{where}.labels[{j}].field", why
        if m.kind == "histogram" and _is_struct(table.Key):
            why = _key_problem(owner, table.Key, m.bucket_field, "bucket field")
            if why:
                return f"{where}.bucket_field", why
        why = _value_problem(owner, _element(table), m.value_field)
        if why:
            return f"{where}.value_field", why
        if "sum_map" in tables:
            why = _value_problem(f"sum_map {m.sum_map}", _element(tables["sum_map"]), "")
            if why:
                return f"{where}.sum_map", why
    return None

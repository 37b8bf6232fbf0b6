"""User-written programs: a BCC C file plus a TOML file that declares it.

    name = "syscall_errors"             # [a-z][a-z0-9_]*, unique
    summary = "failed syscalls by syscall and errno"
    c_file = "syscall_errors.bpf.c"     # relative to this file
    defines = { MAX_ENTRIES = 4096 }    # optional integer -D defines

    [[alternatives]]                    # best first; the first usable one runs
    name = "raw_tracepoint"
    define = "HOOK_RAW_TRACEPOINT"      # optional: -D<define>=1
    hooks = [{ kind = "raw_tracepoint", target = "sys_exit", fn = "on_sys_exit" }]

    [[metrics]]
    name = "syscall_errors_total"       # served as bpfwatch_<name>
    kind = "counter"                    # counter | gauge | histogram
    help = "Failed syscalls."
    map = "errors"
    labels = [{ name = "syscall", field = "nr", decoder = "syscall_name" }]

Histograms add buckets = "exp2" | "linear", bucket_field, bucket_width,
multiplier and sum_map. The result is an ordinary TracerSpec run by the same
runtime as the built-in tracers. Errors name the file and the field.
"""
from __future__ import annotations

import os
import re
import tomllib

from tracers.decoders import DECODERS
from tracers.runtime.errors import BpfwatchError
from tracers.spec import HOOK_KINDS, Alternative, Hook, Label, Metric, TracerSpec

NAME = re.compile(r"^[a-z][a-z0-9_]*$")
DEFINE = re.compile(r"^[A-Z][A-Z0-9_]*$")
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


class ProgramError(BpfwatchError):
    pass


class _Bad(Exception):
    def __init__(self, where: str, why: str):
        super().__init__(where, why)
        self.where, self.why = where, why


def _table(where: str, data, schema: dict, required: tuple) -> dict:
    if not isinstance(data, dict):
        raise _Bad(where or "top level", "must be a table")
    prefix = f"{where}." if where else ""
    for key, value in data.items():
        if key not in schema:
            raise _Bad(prefix + key, f"unknown field (known: {', '.join(schema)})")
        want = schema[key]
        if not isinstance(value, want) or (want is int and isinstance(value, bool)):
            kind = want.__name__ if isinstance(want, type) else "number"
            raise _Bad(prefix + key, f"must be a {kind}, got {type(value).__name__}")
    for key in required:
        if key not in data:
            raise _Bad(prefix + key, "missing")
    return data


def _c_name(where: str, value: str, c_text: str, what: str) -> str:
    if not re.search(rf"\b{re.escape(value)}\b", c_text):
        raise _Bad(where, f"{what} {value!r} does not appear in the C file")
    return value


def _spec(data, base: str) -> tuple[TracerSpec, dict[str, int]]:
    top = _table("", data, TOP, REQUIRED["top"])
    if not NAME.match(top["name"]):
        raise _Bad("name", "must match [a-z][a-z0-9_]*")
    c_path = os.path.join(base, top["c_file"])
    try:
        with open(c_path, encoding="utf-8") as f:
            c_text = f.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise _Bad("c_file", f"cannot read {c_path!r}: {getattr(exc, 'strerror', None) or exc}") from None
    defines = {}
    for key, value in top.get("defines", {}).items():
        if not DEFINE.match(key) or isinstance(value, bool) or not isinstance(value, int):
            raise _Bad(f"defines.{key}", "defines are NAME = integer (NAME in [A-Z][A-Z0-9_]*)")
        defines[key] = value
    alternatives = []
    if not top["alternatives"]:
        raise _Bad("alternatives", "needs at least one [[alternatives]] entry")
    for i, raw in enumerate(top["alternatives"]):
        where = f"alternatives[{i}]"
        alt = _table(where, raw, ALTERNATIVE, REQUIRED["alternative"])
        if alt.get("define") and not DEFINE.match(alt["define"]):
            raise _Bad(f"{where}.define", "must match [A-Z][A-Z0-9_]*")
        if not alt["hooks"]:
            raise _Bad(f"{where}.hooks", "needs at least one hook")
        hooks = []
        for j, raw_hook in enumerate(alt["hooks"]):
            hw = f"{where}.hooks[{j}]"
            h = _table(hw, raw_hook, HOOK, REQUIRED["hook"])
            if h["kind"] not in HOOK_KINDS:
                raise _Bad(f"{hw}.kind", f"unknown hook kind {h['kind']!r} (known: {', '.join(HOOK_KINDS)})")
            if h["kind"] in ("tc", "socket_filter", "xdp", "perf_event"):
                raise _Bad(f"{hw}.kind", f"{h['kind']} hooks need a tracer module; programs take "
                           "tracepoints, raw tracepoints, kprobes, fentry and uprobes")
            if not h["fn"].startswith("on_"):
                raise _Bad(f"{hw}.fn", "entry points are named on_<event>")
            _c_name(f"{hw}.fn", h["fn"], c_text, "entry point")
            hooks.append(Hook(h["kind"], h["target"], h["fn"], h.get("optional", False)))
        needs = tuple(alt.get("needs", ()))
        alternatives.append(Alternative(alt["name"], tuple(hooks), alt.get("define", ""), needs=needs))
    metrics = []
    seen = set()
    if not top["metrics"]:
        raise _Bad("metrics", "needs at least one [[metrics]] entry")
    for i, raw in enumerate(top["metrics"]):
        where = f"metrics[{i}]"
        m = _table(where, raw, METRIC, REQUIRED["metric"])
        if not NAME.match(m["name"]) or m["name"] in seen:
            raise _Bad(f"{where}.name", "must match [a-z][a-z0-9_]* and be unique")
        seen.add(m["name"])
        kind = m.get("kind", "counter")
        if kind not in ("counter", "gauge", "histogram"):
            raise _Bad(f"{where}.kind", f"must be counter, gauge or histogram, got {kind!r}")
        if kind == "histogram" and m.get("buckets") not in ("exp2", "linear"):
            raise _Bad(f"{where}.buckets", "a histogram needs buckets = \"exp2\" or \"linear\"")
        if kind != "histogram" and ({"buckets", "bucket_field", "bucket_width", "sum_map"} & set(m)):
            raise _Bad(f"{where}.kind", "bucket settings need kind = \"histogram\"")
        if m.get("bucket_width", 1) < 1 or m.get("multiplier", 1.0) <= 0:
            raise _Bad(f"{where}.{'bucket_width' if m.get('bucket_width', 1) < 1 else 'multiplier'}",
                       "must be positive")
        _c_name(f"{where}.map", m["map"], c_text, "map")
        if m.get("sum_map"):
            _c_name(f"{where}.sum_map", m["sum_map"], c_text, "map")
        labels = []
        for j, raw_label in enumerate(m.get("labels", [])):
            lw = f"{where}.labels[{j}]"
            lab = _table(lw, raw_label, LABEL, REQUIRED["label"])
            if not NAME.match(lab["name"]) or lab["name"] == "le":
                raise _Bad(f"{lw}.name", "must match [a-z][a-z0-9_]* and not be 'le'")
            decoder = lab.get("decoder", "int")
            if decoder not in DECODERS:
                raise _Bad(f"{lw}.decoder", f"unknown decoder {decoder!r} (known: {', '.join(sorted(DECODERS))})")
            labels.append(Label(lab["name"], lab.get("field", ""), decoder))
        metrics.append(Metric(m["name"], m["help"], m["map"], kind, tuple(labels), m.get("value_field", ""),
                              m.get("buckets", ""), m.get("bucket_field", "slot"), m.get("bucket_width", 1),
                              float(m.get("multiplier", 1.0)), m.get("sum_map", "")))
    # An absolute c_file: the loader reads it as is (pathlib joins absolute paths so).
    spec = TracerSpec(name=top["name"], summary=top.get("summary", top["name"]),
                      c_file=os.path.abspath(c_path), alternatives=tuple(alternatives),
                      metrics=tuple(metrics))
    return spec, defines


def load(path: str) -> tuple[TracerSpec, dict[str, int]]:
    """(spec, defines) from a program's TOML file; ProgramError names the field."""
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as exc:
        raise ProgramError(f"program {path}: cannot read: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ProgramError(f"program {path}: not valid TOML: {exc}") from None
    try:
        return _spec(data, os.path.dirname(os.path.abspath(path)))
    except _Bad as bad:
        raise ProgramError(f"program {path}: {bad.where}: {bad.why}") from None

"""Find tracer modules: any module in this package that declares a SPEC."""
from __future__ import annotations

import importlib
import pkgutil

import tracers
from tracers.spec import TracerSpec

NOT_TRACERS = {"__main__", "bootstrap", "cli", "common", "registry", "doctor", "listing",
               "spec", "btf", "decoders", "fmt", "syscall_table", "runtime",
               "blockcommon", "schedcommon", "pcap", "flamegraph", "tcpcommon"}


def tracer_modules() -> dict:
    """name -> module, sorted by name."""
    found = {}
    for info in pkgutil.iter_modules(tracers.__path__):
        if info.name in NOT_TRACERS or info.name.startswith("_"):
            continue
        module = importlib.import_module(f"tracers.{info.name}")
        spec = getattr(module, "SPEC", None)
        if isinstance(spec, TracerSpec):
            found[spec.name] = module
    return dict(sorted(found.items()))


def tracer_module(name: str):
    """The module of tracer `name` (a tracer's module is named after it), or
    None. Imports only that module: start-up need not pay for the others."""
    if name in NOT_TRACERS or name.startswith("_") or not name.isidentifier():
        return None
    try:
        module = importlib.import_module(f"tracers.{name}")
    except ModuleNotFoundError as exc:
        if exc.name == f"tracers.{name}":
            return None
        raise
    spec = getattr(module, "SPEC", None)
    return module if isinstance(spec, TracerSpec) and spec.name == name else None

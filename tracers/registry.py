"""Find tracer modules: any module in this package that declares a SPEC."""
from __future__ import annotations

import importlib
import pkgutil

import tracers
from tracers.spec import TracerSpec

NOT_TRACERS = {"__main__", "bootstrap", "cli", "common", "registry", "doctor", "listing",
               "spec", "btf", "decoders", "fmt", "syscall_table", "runtime",
               "blockcommon", "pcap", "flamegraph", "tcpcommon"}


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

"""Find the tracers: every public module of tracers.tools declares one TRACER."""
from __future__ import annotations

import importlib
import pkgutil

from tracers import tools
from tracers.spec import Tracer


def _load(name: str) -> type[Tracer] | None:
    module = importlib.import_module(f"tracers.tools.{name}")
    tracer = getattr(module, "TRACER", None)
    if not (isinstance(tracer, type) and issubclass(tracer, Tracer) and tracer.spec.name == name):
        raise TypeError(f"tracers/tools/{name}.py must declare TRACER, a Tracer named {name!r}")
    return tracer


def tracer_names() -> list[str]:
    return sorted(i.name for i in pkgutil.iter_modules(tools.__path__) if not i.name.startswith("_"))


def tracer_classes() -> dict[str, type[Tracer]]:
    """name -> Tracer class, sorted by name."""
    return {name: _load(name) for name in tracer_names()}


def tracer_class(name: str) -> type[Tracer] | None:
    """The tracer called `name`, importing only its module (start-up need
    not pay for the others), or None."""
    return _load(name) if name in tracer_names() else None

"""A number that the C and the Python share is passed by Python every time:
the C gives it no silent default (it stops with #error when one is missing,
which every kernel test's compile checks)."""
import re
from pathlib import Path

import pytest

from tracers import options
from tracers.registry import tracer_classes
from tracers.runtime.loader import c_source
from tracers.runtime.stats import STAT_DEFINES

C_DIR = Path(__file__).parents[2] / "bpf_c"
POSITIONALS = {"funccount": ["t:sched:sched_switch"], "funclatency": ["c:nanosleep"],
               "tctraffic": ["lo"]}


def program_text(spec) -> str:
    """What the compiler sees of bpf_c: the source and the headers it includes."""
    text = c_source(spec)
    for header in set(re.findall(r'#include "(\w+\.h)"', text)):
        text += (C_DIR / header).read_text()
    return text


def silent_defaults(text: str) -> set[str]:
    """Names the C gives a value of its own when none is passed."""
    return set(re.findall(r"#ifndef (\w+)[^\n]*\n#define \1\b", text))


def test_silent_defaults_are_found():
    text = '#ifndef A  // why\n#error "A must be passed by Python"\n#endif\n' \
           '#ifndef D  // why\n#define D 1\n#endif\n#ifndef E\n#define E 2\n#endif\n'
    assert silent_defaults(text) == {"D", "E"}


@pytest.mark.parametrize("name", sorted(tracer_classes()))
def test_the_c_has_no_default_for_what_python_passes(name):
    tracer = tracer_classes()[name]()
    args = options.build_parser(tracer).parse_args(POSITIONALS.get(name, []))
    setup = tracer.setup(args)
    passed = {**options.common_defines(args), **setup.defines, **STAT_DEFINES}
    assert silent_defaults(program_text(setup.spec)) & set(passed) == set()

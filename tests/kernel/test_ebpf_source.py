"""`--ebpf` prints exactly the program that loads: the chosen alternative's
define and the BTF offsets included (it once printed execsnoop without any
entry point)."""
import subprocess
import sys

import pytest

from conftest import ROOT
from tracers import options
from tracers.registry import tracer_class
from tracers.runtime import Session

pytestmark = pytest.mark.kernel


@pytest.mark.parametrize("argv", [["execsnoop"], ["opensnoop", "-x"], ["syscount", "-L"],
                                  ["runqlat", "-P"], ["tcplife"]])
def test_printed_source_is_the_compiled_source(argv):
    printed = subprocess.run([sys.executable, "-m", "tracers", *argv, "--ebpf"], cwd=ROOT,
                             capture_output=True, text=True, timeout=60)
    assert printed.returncode == 0, printed.stderr
    tracer = tracer_class(argv[0])()
    args = options.build_parser(tracer).parse_args(argv[1:])
    setup = tracer.setup(args)
    defines = {**options.common_defines(args), **setup.defines}
    with Session(setup.spec, defines, attachers=setup.attachers, skip=setup.skip) as session:
        # Session compiles session.source() and nothing else
        assert printed.stdout == session.source() + "\n"
        alt = session.alternative
    if alt.define:
        assert f"#define {alt.define} 1" in printed.stdout
    for offset in session.plan.offsets:
        assert f"#define {offset} " in printed.stdout

"""After every way a tracer can end, nothing of ours stays in the kernel."""
import signal

import pytest

from conftest import bpf_objects, probe_events, wait_gone
from tracers.registry import tracer_class

pytestmark = pytest.mark.kernel


def entry_points(name: str) -> set[str]:
    spec = tracer_class(name).spec
    return {h.fn for alt in spec.alternatives for h in alt.hooks}


# tctraffic on tcx: links die with their owner, so even SIGKILL leaves nothing
@pytest.mark.parametrize("tracer_args", [["execsnoop"], ["syscount", "-L"],
                                         ["tctraffic", "lo", "--hook", "tcx"]])
@pytest.mark.parametrize("ending", ["duration", "SIGINT", "SIGTERM", "SIGKILL"])
def test_nothing_left_after(tracer, tracer_args, ending):
    names = entry_points(tracer_args[0])
    before, events_before = bpf_objects(names), probe_events()
    if ending == "duration":
        run = tracer([*tracer_args, "-d", "0.5"])
        assert run.wait(30) == 0
    else:
        run = tracer(tracer_args)
        assert bpf_objects(names)["prog"] - before["prog"], "tracer loaded no program?"
        rc = run.stop(getattr(signal, ending))
        assert rc == (-9 if ending == "SIGKILL" else 0)
    assert wait_gone(before, names=names) == {"prog": set(), "link": set()}
    assert probe_events() == events_before

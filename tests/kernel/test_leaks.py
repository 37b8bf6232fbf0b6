"""After every way a tracer can end, nothing of ours stays in the kernel."""
import signal

import pytest

from conftest import bpf_objects, probe_events, wait_gone

pytestmark = pytest.mark.kernel


@pytest.mark.parametrize("tracer_args", [["execsnoop"], ["syscount", "-L"]])
@pytest.mark.parametrize("ending", ["duration", "SIGINT", "SIGTERM", "SIGKILL"])
def test_nothing_left_after(tracer, tracer_args, ending):
    before, events_before = bpf_objects(), probe_events()
    if ending == "duration":
        run = tracer([*tracer_args, "-d", "0.5"])
        assert run.wait(30) == 0
    else:
        run = tracer(tracer_args)
        assert bpf_objects()["prog"] - before["prog"], "tracer loaded no program?"
        rc = run.stop(getattr(signal, ending))
        assert rc == (-9 if ending == "SIGKILL" else 0)
    assert wait_gone(before) == {"prog": set(), "link": set()}
    assert probe_events() == events_before

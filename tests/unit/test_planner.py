"""Hook planning against a fake probe: first usable alternative wins."""
import pytest

from tracers.runtime import planner
from tracers.runtime.errors import NoUsableHook
from tracers.runtime.features import Feature
from tracers.spec import Alternative, Hook, TracerSpec


class FakeProbe:
    def __init__(self, available, headers_mode="fallback"):
        self.available = set(available)
        self.headers = type("H", (), {"mode": headers_mode})()

    def usable(self, name):
        return Feature(name in self.available, f"{name} said no")

    feature = usable


@pytest.fixture(autouse=True)
def tracepoints_exist(monkeypatch):
    monkeypatch.setattr(planner.machine, "tracepoint_exists", lambda t: t != "cat:missing")
    monkeypatch.setattr(planner.machine, "raw_tracepoint_exists", lambda t: True)
    monkeypatch.setattr(planner.machine, "kernel_function_traceable", lambda f: (True, ""))
    # a fake machine: this process's capabilities are not what is planned for
    monkeypatch.setattr(planner.privileges, "require_for_alternatives", lambda alts, name: None)


def spec(*alts):
    return TracerSpec(name="t", summary="s", c_file="t.bpf.c", alternatives=alts)


TP = Alternative("tracepoint", (Hook("tracepoint", "cat:name", "on_x"),), define="HOOK_TP")
KP = Alternative("kprobe", (Hook("kprobe", "func", "on_x"),), define="HOOK_KP")
MISSING = Alternative("tracepoint", (Hook("tracepoint", "cat:missing", "on_x"),))


@pytest.mark.parametrize("available, alts, chosen", [
    ({"tracepoint", "kprobe"}, (TP, KP), "tracepoint"),
    ({"kprobe"}, (TP, KP), "kprobe"),
    ({"tracepoint", "kprobe"}, (MISSING, KP), "kprobe"),
])
def test_first_usable_alternative(available, alts, chosen):
    assert planner.plan(spec(*alts), FakeProbe(available)).alternative.name == chosen


def test_nothing_usable_names_every_reason():
    result = planner.plan(spec(MISSING, KP), FakeProbe({"tracepoint"}))
    assert not result.usable
    assert result.rejected == [("tracepoint", "tracepoint cat:missing does not exist"),
                               ("kprobe", "kprobe unavailable (kprobe said no)")]
    with pytest.raises(NoUsableHook, match="t: no usable hook"):
        planner.require(spec(MISSING, KP), FakeProbe({"tracepoint"}))


def test_optional_hooks_never_block():
    alt = Alternative("tracepoint", (Hook("tracepoint", "cat:name", "on_x"),
                                     Hook("tracepoint", "cat:missing", "on_y", optional=True)))
    assert planner.plan(spec(alt), FakeProbe({"tracepoint"})).usable


def test_force_picks_that_alternative_only():
    result = planner.plan(spec(TP, KP), FakeProbe({"tracepoint"}), force="kprobe")
    assert not result.usable and result.rejected[0][0] == "kprobe"


def test_missing_btf_field_makes_alternative_ineligible(monkeypatch):
    from tracers.runtime import btf
    fake = btf.FieldNotFound("tcp_sock", "no_such_field")

    def resolve(fields):
        raise fake
    monkeypatch.setattr(planner.btf_reader, "resolve_offsets", resolve)
    alt = Alternative("tracepoint", TP.hooks, btf_fields={"OFF_X": ("tcp_sock", "no_such_field")})
    result = planner.plan(spec(alt, KP), FakeProbe({"tracepoint"}))
    assert not result.usable
    assert "no_such_field" in result.rejected[0][1]


def test_btf_offsets_first_even_with_matching_headers(monkeypatch):
    monkeypatch.setattr(planner.btf_reader, "resolve_offsets", lambda f: {"OFF_X": 8})
    alt = Alternative("tracepoint", TP.hooks, btf_fields={"OFF_X": ("s", "f")})
    assert planner.plan(spec(alt), FakeProbe({"tracepoint"}, "matching")).offsets == {"OFF_X": 8}
    assert planner.plan(spec(alt), FakeProbe({"tracepoint"}, "fallback")).offsets == {"OFF_X": 8}
    forced = planner.plan(spec(alt), FakeProbe({"tracepoint"}, "matching"), offsets_from="headers")
    assert forced.offsets == {}


def test_a_field_btf_lacks_comes_from_matching_headers(monkeypatch):
    def resolve(fields):
        raise planner.btf_reader.FieldNotFound("s", "f")
    monkeypatch.setattr(planner.btf_reader, "resolve_offsets", resolve)
    alt = Alternative("tracepoint", TP.hooks, btf_fields={"OFF_X": ("s", "f")})
    assert planner.plan(spec(alt), FakeProbe({"tracepoint"}, "matching")).offsets == {}
    assert not planner.plan(spec(alt), FakeProbe({"tracepoint"}, "matching"), offsets_from="btf").usable
    assert not planner.plan(spec(alt), FakeProbe({"tracepoint"}, "fallback")).usable


def test_made_up_field_against_real_btf():
    # The reason must name the field, from the machine's real BTF.
    from tracers.runtime import btf
    try:
        btf.BTF.load()
    except btf.BTFUnavailable:
        pytest.skip("no kernel BTF on this machine")
    alt = Alternative("tracepoint", TP.hooks,
                      btf_fields={"OFF_X": ("tcp_sock", "bytes_acked_by_magic")})
    result = planner.plan(spec(alt), FakeProbe({"tracepoint"}))
    assert "bytes_acked_by_magic" in result.rejected[0][1]

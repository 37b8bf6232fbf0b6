"""bootstrap's decisions, without touching apt."""
import pytest

from tracers import bootstrap


@pytest.fixture
def calls(monkeypatch):
    seen = []
    monkeypatch.setattr(bootstrap, "run", lambda step, cmd, **kw: seen.append(cmd))
    monkeypatch.setattr(bootstrap, "say", lambda message: None)
    return seen


def test_nothing_to_do_is_silent_even_on_fallback_headers(monkeypatch, calls):
    monkeypatch.setattr(bootstrap, "is_installed",
                        lambda p: not p.startswith("linux-headers-6.18"))  # archive lacks exact ones
    monkeypatch.setattr(bootstrap.platform, "release", lambda: "6.18.44-fc-v595")
    bootstrap.ensure_apt(["python3-bpfcc"])
    assert calls == []


def test_missing_package_updates_then_installs_it(monkeypatch, calls):
    monkeypatch.setattr(bootstrap, "is_installed", lambda p: p != "bpftool")
    bootstrap.ensure_apt(["python3-bpfcc", "bpftool"])
    assert "update" in calls[0] and "bpftool" in calls[1]


def test_failure_names_the_step():
    with pytest.raises(bootstrap.StepFailed, match="step 'probe' failed: .*no-such-command"):
        bootstrap.run("probe", ["/no-such-command"])

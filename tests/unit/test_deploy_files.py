"""The files an operator deploys and reads first: the unit, the Vagrantfile,
the README's commands and claims (no root, no bcc)."""
import re
import shutil
import subprocess
from pathlib import Path

from conftest import ROOT
from tracers.registry import tracer_classes
from tracers.runtime.privileges import NEEDS, cap_list

UNIT = ROOT / "exporters" / "bpfwatch-exporter.service"
README = (ROOT / "README.md").read_text()


def exposure(unit: Path) -> float:
    out = subprocess.run(["systemd-analyze", "security", "--offline=true", str(unit)],
                         capture_output=True, text=True, timeout=60).stdout
    return float(re.search(r"Overall exposure level for \S+: (\d+\.\d+)", out).group(1))


def test_unit_rates_at_most_4_5_and_the_readme_says_how_much():
    score = exposure(UNIT)
    assert score <= 4.5
    assert f"rates it **{score} OK**" in README


def default_tracer_needs() -> set[str]:
    """What every hook alternative of the exporter's default tracers may need."""
    out = set()
    for tracer in tracer_classes().values():
        if tracer.spec.exporter_default:
            for alt in tracer.spec.alternatives:
                for hook in alt.hooks:
                    out |= NEEDS[hook.kind]
    return out


def test_unit_grants_what_the_default_tracers_need_and_no_more():
    text = UNIT.read_text()
    for key in ("AmbientCapabilities", "CapabilityBoundingSet"):
        granted = re.search(rf"^{key}=(.*)$", text, re.M).group(1).split()
        assert sorted(granted) == sorted(cap_list(default_tracer_needs()).split(", "))


def test_readme_capability_table_is_the_measured_one():
    rows = re.findall(r"^\| ([a-z_, ]+) \| (CAP_[A-Z_, ]+) \|", README, re.M)
    table = {kind.strip(): set(caps.replace(" ", "").split(",")) for kinds, caps in rows
             for kind in kinds.split(",")}
    for kind, needs in NEEDS.items():
        assert table[kind] == set(cap_list(needs).split(", ")), kind


def test_readme_has_exactly_the_two_commands_and_ci_runs_the_second():
    block = re.search(r"## Two commands\n.*?```sh\n(.*?)```", README, re.S).group(1)
    commands = block.strip().splitlines()
    assert commands == ["/usr/bin/python3 -m tracers.bootstrap && .venv/bin/bpfwatch exporter",
                        "/usr/bin/python3 -m tracers.bootstrap --test && .venv/bin/python -m pytest"]
    assert (ROOT / ".ci" / "run").read_text().strip().splitlines()[-1] == commands[1]


def test_readme_names_the_exporters_default_tracers():
    defaults = sorted(n for n, t in tracer_classes().items() if t.spec.exporter_default)
    claim = re.search(r"On the CI machines that is ([a-z, ]+?)\. ", README.replace("\n  ", " ")).group(1)
    assert sorted(re.split(r", | and ", claim.replace(", and ", ", "))) == defaults
    serving = re.search(r"Serving (\d+)/(\d+) tracers \(([a-z, ]+)\)", README)
    assert serving.group(3).split(", ") == defaults
    assert int(serving.group(1)) == int(serving.group(2)) == len(defaults)


def test_vagrantfile_validates_in_a_copy(tmp_path):
    """Offline (no box download, no provider), in a temporary copy: vagrant
    writes .vagrant/ next to the Vagrantfile, never into the checkout."""
    existed = (ROOT / ".vagrant").exists()
    copy = tmp_path / "checkout"
    copy.mkdir()
    shutil.copy2(ROOT / "Vagrantfile", copy / "Vagrantfile")
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "VAGRANT_HOME": str(tmp_path / "vd"),
           "VAGRANT_CHECKPOINT_DISABLE": "1"}
    proc = subprocess.run(["vagrant", "validate", "--ignore-provider"], cwd=copy, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "validated successfully" in proc.stdout
    assert (ROOT / ".vagrant").exists() == existed

"""Every `--json` field README.md documents for a tracer appears in that
tracer's real output: the JSON lines the other kernel tests' tracers printed
(conftest records them; this test is ordered last). Run alone it fails,
saying which tracers were not run."""
import pytest

from conftest import ROOT, SEEN_FIELDS
from readme_fields import documented
from tracers.registry import tracer_names

pytestmark = pytest.mark.kernel


def test_every_documented_json_field_is_in_real_output():
    docs = documented((ROOT / "README.md").read_text(), tracer_names())
    assert set(docs) == set(tracer_names()), f"no --json fields documented for {set(tracer_names()) - set(docs)}"
    missing = {}
    for name, fields in sorted(docs.items()):
        if name not in SEEN_FIELDS:
            missing[name] = "never run with --json by the kernel tests (run the whole tier)"
            continue
        absent = sorted(f for f in fields if not set(f.split("|")) & SEEN_FIELDS[name])
        if absent:
            missing[name] = absent
    assert not missing, missing

"""The README --json field parser (tests/readme_fields.py) on prose shaped
like README.md's: backticked names count, values in parentheses do not."""
from readme_fields import documented

README = """
## Tracers

### alpha and beta

`bpfwatch alpha` does a thing.

`--json` fields per interval: `time`, `unit` (`usecs` or `msecs`),
`histograms` (list of `{[pid|tid,] total}`). Metrics: `bpfwatch_alpha_total`
is not a field.

`bpfwatch beta` does another. The `--json` fields are as follows:

- alpha: `extra_a`
- beta: `extra_b`, `null` means nothing

### gamma

Nothing about JSON here.
"""


def test_fields_per_tracer_from_prose_and_bullets():
    found = documented(README, ["alpha", "beta", "gamma"])
    assert found == {"alpha": {"time", "unit", "histograms", "pid|tid", "total", "extra_a"},
                     "beta": {"extra_b"}}

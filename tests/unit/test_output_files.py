"""Output files (--svg, -w) are checked before tracing and never followed
through a symlink (issue 11: root overwrote a planted symlink's target)."""
import os

import pytest

from tracers.output.files import open_output
from tracers.spec import UsageError


def test_a_new_file_is_created_and_an_old_one_of_ours_truncated(tmp_path):
    target = tmp_path / "out.svg"
    with open_output("--svg", str(target), "w") as f:
        f.write("x")
    target.write_text("longer content")
    with open_output("--svg", str(target), "w") as f:
        f.write("y")
    assert target.read_text() == "y"


def test_a_planted_symlink_is_refused_and_its_target_untouched(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("precious")
    (tmp_path / "out.pcap").symlink_to(victim)
    with pytest.raises(UsageError, match="symbolic link"):
        open_output("-w", str(tmp_path / "out.pcap"))
    assert victim.read_text() == "precious"


@pytest.mark.parametrize("path, words", [("", "file name is empty"), ("/tmp", "is a directory"),
                                         ("/dev/null", "not a regular file"),
                                         ("/no/such/dir/x.svg", "No such file")])
def test_bad_paths_are_one_usage_error(path, words):
    with pytest.raises(UsageError, match=words):
        open_output("--svg", path)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to make a file of another user")
def test_another_users_file_is_not_overwritten(tmp_path):
    theirs = tmp_path / "theirs.svg"
    theirs.write_text("mine")
    os.chown(theirs, 65534, 65534)
    with pytest.raises(UsageError, match="belongs to uid 65534"):
        open_output("--svg", str(theirs))
    assert theirs.read_text() == "mine"

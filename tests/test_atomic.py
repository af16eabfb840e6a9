import pytest

from cloudseg.atomic import atomic_path
from cloudseg.errors import OutputExistsError


def test_file_appears_only_when_complete(tmp_path):
    final = tmp_path / "out.txt"
    with atomic_path(final) as tmp:
        tmp.write_text("whole")
        assert not final.exists()
    assert final.read_text() == "whole"
    assert list(tmp_path.iterdir()) == [final]


def test_failure_leaves_existing_output_untouched(tmp_path):
    final = tmp_path / "out.txt"
    final.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(final, overwrite=True) as tmp:
        tmp.write_text("half")
        raise RuntimeError("interrupted")
    assert final.read_text() == "old"
    assert list(tmp_path.iterdir()) == [final]


def test_existing_output_refused_without_overwrite(tmp_path):
    final = tmp_path / "out"
    final.mkdir()
    (final / "keep").write_text("x")
    with pytest.raises(OutputExistsError, match="--overwrite"), atomic_path(final):
        pytest.fail("body must not run")
    assert (final / "keep").read_text() == "x"


def test_folder_replaced_whole_with_overwrite(tmp_path):
    final = tmp_path / "out"
    final.mkdir()
    (final / "old").write_text("x")
    with atomic_path(final, overwrite=True) as tmp:
        tmp.mkdir()
        (tmp / "new").write_text("y")
    assert sorted(p.name for p in final.iterdir()) == ["new"]
    assert list(tmp_path.iterdir()) == [final]

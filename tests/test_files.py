"""The one atomic-write helper: whole or absent, nothing left behind, ordinary permissions."""

import os
import stat

import pytest

from datagen.common.files import atomic_path, leftover_temporaries, write_text


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "out.json"
    write_text(target, "old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("disk gone")
    assert target.read_text() == "old" and not leftover_temporaries(target)


def test_a_finished_write_replaces_the_file_with_the_mode_open_would_give(tmp_path):
    target = tmp_path / "grid.png"
    with atomic_path(target, durable=True) as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith(".grid.png.") and tmp.suffix == ".png"
        tmp.write_bytes(b"png")
    plain = tmp_path / "plain"
    plain.write_text("")
    assert target.read_bytes() == b"png" and not leftover_temporaries(target)
    assert stat.S_IMODE(os.stat(target).st_mode) == stat.S_IMODE(os.stat(plain).st_mode)


def test_leftovers_of_a_killed_write_are_found(tmp_path):
    target = tmp_path / "a[1].h5"
    stale = tmp_path / ".a[1].h5.x1y2.tmp.h5"
    stale.write_text("")
    (tmp_path / ".other.h5.x1y2.tmp.h5").write_text("")
    assert leftover_temporaries(target) == [stale]

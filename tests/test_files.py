"""Atomic writes: a writer that fails leaves the old file as it was, and no temporary file."""

import pytest

from mnistcls.files import atomic_path, new_file, read_json, write_json, write_text


def test_a_failing_writer_leaves_the_old_file_intact_and_no_temporary_file(tmp_path):
    target = tmp_path / "model.keras"
    target.write_text("the old model")
    with pytest.raises(RuntimeError, match="disk full"):
        with atomic_path(target) as tmp:
            assert tmp.parent == target.parent and tmp.suffix == ".keras"  # writers that pick a format by it
            tmp.write_text("half of a new mod")
            raise RuntimeError("disk full")
    assert target.read_text() == "the old model"
    assert [p.name for p in tmp_path.iterdir()] == ["model.keras"]


def test_a_failing_writer_of_a_new_file_leaves_nothing(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        with atomic_path(tmp_path / "history.json") as tmp:
            tmp.write_text("[")
            raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []


def test_writes_replace_the_file_whole(tmp_path):
    path = tmp_path / "run.json"
    write_json(path, {"status": "running"})
    write_json(path, {"status": "finished", "epochs": 3})
    assert read_json(path) == {"status": "finished", "epochs": 3}
    write_text(tmp_path / "notes.txt", "é\n")
    assert (tmp_path / "notes.txt").read_text(encoding="utf-8") == "é\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt", "run.json"]


def test_read_json_gives_the_default_for_a_missing_or_damaged_file(tmp_path):
    (tmp_path / "cut.json").write_text('{"status": "runn')
    assert read_json(tmp_path / "cut.json", {}) == {} and read_json(tmp_path / "missing.json", []) == []


def test_a_failing_writer_removes_the_folders_made_for_it_and_keeps_those_it_found(tmp_path):
    (tmp_path / "cache").mkdir()
    with pytest.raises(OSError):
        with atomic_path(tmp_path / "cache" / "mnist" / "arrays" / "x.npy", make_folders=True) as tmp:
            tmp.write_bytes(b"half")
            raise OSError("disk full")
    assert [p.name for p in tmp_path.rglob("*")] == ["cache"]
    with atomic_path(tmp_path / "cache" / "mnist" / "x.npy", make_folders=True) as tmp:
        tmp.write_bytes(b"whole")
    assert (tmp_path / "cache" / "mnist" / "x.npy").read_bytes() == b"whole"


def test_a_new_file_never_takes_the_name_of_one_that_exists(tmp_path):
    assert new_file(tmp_path / "samples.png") == tmp_path / "samples.png"
    (tmp_path / "samples.png").touch()
    (tmp_path / "samples-2.png").touch()
    assert new_file(tmp_path / "samples.png") == tmp_path / "samples-3.png"

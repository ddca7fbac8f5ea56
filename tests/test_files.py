"""Atomic writes: a writer that fails leaves the old file as it was, and no temporary file."""

import pytest

from mnistcls.files import atomic_path, inside, name_part, new_file, publish, read_json, write_json, write_text


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
    assert write_text(new_file(tmp_path / "samples.txt"), "first") == tmp_path / "samples.txt"
    (tmp_path / "samples-2.txt").write_text("someone else's")
    assert write_text(new_file(tmp_path / "samples.txt"), "second") == tmp_path / "samples-3.txt"
    assert [(tmp_path / f"samples{n}.txt").read_text() for n in ("", "-2", "-3")] == ["first", "someone else's",
                                                                                      "second"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["samples-2.txt", "samples-3.txt", "samples.txt"]


def test_processes_writing_new_files_at_once_never_write_one_name(tmp_path):
    """Each writer finds the first name free when it starts; only one of them may take it."""
    from concurrent.futures import ThreadPoolExecutor

    started = []

    def slow_write(tmp, text):
        started.append(text)
        while len(started) < 8:  # every writer has started before any finishes
            pass
        tmp.write_text(text)

    with ThreadPoolExecutor(8) as pool:
        written = list(pool.map(lambda i: publish(new_file(tmp_path / "curves.png"),
                                                  lambda tmp: slow_write(tmp, str(i))), range(8)))
    assert len(set(written)) == 8
    assert sorted(p.read_text() for p in written) == [str(i) for i in range(8)]


@pytest.mark.parametrize("name, expected", [
    ("../../escaped", "escaped"), ("/etc/passwd", "etc_passwd"), ("", "_"), ("..", "_"), (".", "_"),
    ("a/b", "a_b"), ("seed_a-epochs1", "seed_a-epochs1"), (".hidden", "hidden"), ("x/../..", "x"),
])
def test_names_that_become_paths_stay_inside_their_folder(tmp_path, name, expected):

    assert name_part(name) == expected
    path = inside(tmp_path / "studies", name)
    assert path.parent == tmp_path / "studies" and path.resolve().is_relative_to((tmp_path / "studies").resolve())

import pytest
from PIL import Image

import bad_corpus as bc
from negate.data.scan import scan_images, scan_labelled_folder


def _png(path, colour=(1, 2, 3)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (4, 4), colour).save(path, "PNG")
    return path


def _rel(paths, root):
    return [p.relative_to(root).as_posix() for p in paths]


def test_corpus_scan_handles_loops_dangling_links_and_odd_entries(tmp_path):
    expected = bc.make_bad_corpus(tmp_path)
    result = scan_images(tmp_path)
    regular = sorted(n for n in expected if (tmp_path / n).is_file() and not (tmp_path / n).is_symlink()
                     and n != "fifo.jpg")
    assert _rel(result.files, tmp_path) == regular
    assert "x.jpg/inner.png" in regular and bc.UNICODE_PATH in regular
    reasons = {p.relative_to(tmp_path).as_posix(): r for p, r in result.skipped}
    assert "loop" in reasons["selfloop.jpg"]
    assert "dangling" in reasons["dangling.jpg"]
    assert "directory" in reasons["x.jpg"]
    assert "already scanned" in reasons["loop/back"]
    assert "regular file" in reasons["fifo.jpg"]


def test_scan_is_sorted_deterministic_and_case_insensitive(tmp_path):
    for name in ["b/Z.JPG", "a/y.Png", "a/deep/er/still/x.webp", "c.TIFF", "notes.txt", "a/readme.md"]:
        _png(tmp_path / name)
    first = scan_images(tmp_path)
    assert first.files == sorted(first.files) == scan_images(tmp_path).files
    assert _rel(first.files, tmp_path) == ["a/deep/er/still/x.webp", "a/y.Png", "b/Z.JPG", "c.TIFF"]
    assert first.skipped == []
    assert _rel(scan_images(tmp_path, extensions=["png", ".TIFF"]).files, tmp_path) == ["a/y.Png", "c.TIFF"]


def test_symlinked_files_and_dirs(tmp_path):
    _png(tmp_path / "data/real.png")
    (tmp_path / "data/link.png").symlink_to("real.png")
    (tmp_path / "elsewhere").mkdir()
    _png(tmp_path / "elsewhere/far.png")
    (tmp_path / "data/linked_dir").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    (tmp_path / "data/again").symlink_to(tmp_path / "data", target_is_directory=True)

    followed = scan_images(tmp_path / "data")
    assert _rel(followed.files, tmp_path / "data") == ["link.png", "linked_dir/far.png"]
    reasons = dict((p.name, r) for p, r in followed.skipped)
    assert "same file as" in reasons["real.png"]  # sorted order: link.png is met first
    assert "already scanned" in reasons["again"]

    plain = scan_images(tmp_path / "data", follow_symlinks=False)
    assert _rel(plain.files, tmp_path / "data") == ["real.png"]
    assert [p.name for p, _ in plain.skipped] == ["link.png"]


def test_deep_tree(tmp_path):
    deep = tmp_path.joinpath(*[f"d{i}" for i in range(60)])
    _png(deep / "bottom.png")
    assert scan_images(tmp_path).files == [deep / "bottom.png"]


def test_unreadable_directory_is_reported(tmp_path):
    if bc.permissions_are_bypassed(tmp_path):
        pytest.skip("this process (root) lists mode-000 directories")
    _png(tmp_path / "ok.png")
    _png(tmp_path / "locked/hidden.png")
    (tmp_path / "locked").chmod(0)
    try:
        result = scan_images(tmp_path)
    finally:
        (tmp_path / "locked").chmod(0o755)
    assert result.files == [tmp_path / "ok.png"]
    assert result.skipped[0][0] == tmp_path / "locked" and "cannot list" in result.skipped[0][1]


def test_bad_roots(tmp_path):
    with pytest.raises(FileNotFoundError):
        scan_images(tmp_path / "missing")
    with pytest.raises(NotADirectoryError):
        scan_images(_png(tmp_path / "a.png"))


def test_labelled_folder_with_aliases(tmp_path):
    _png(tmp_path / "Human/p1.jpg")
    _png(tmp_path / "real/sub/p2.png")
    _png(tmp_path / "AI/g1.png")
    _png(tmp_path / "synthetic/g2.webp")
    _png(tmp_path / "other/ignored.png")
    items = scan_labelled_folder(tmp_path)
    assert [(p.relative_to(tmp_path).as_posix(), y) for p, y in items] == [
        ("AI/g1.png", 1), ("Human/p1.jpg", 0), ("real/sub/p2.png", 0), ("synthetic/g2.webp", 1),
    ]


def test_labelled_folder_errors(tmp_path):
    _png(tmp_path / "photos/p.png")
    with pytest.raises(ValueError, match="real/.*fake/"):
        scan_labelled_folder(tmp_path)
    _png(tmp_path / "fake/g.png")
    assert [y for _, y in scan_labelled_folder(tmp_path)] == [1]  # one class alone is allowed
    (tmp_path / "real").mkdir()
    (tmp_path / "real/g.png").symlink_to(tmp_path / "fake/g.png")
    with pytest.raises(ValueError, match="linked into both"):
        scan_labelled_folder(tmp_path)
    with pytest.raises(NotADirectoryError):
        scan_labelled_folder(tmp_path / "nope")

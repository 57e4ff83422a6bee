"""Input policy: symlinks out of the input folder, loops and dangling links."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from accelerated.intake import LINK_BROKEN, LINK_ESCAPES, LINK_LOOP, NOT_A_DOCUMENT, discover


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """in/ with real files, links inside, links out, a loop, a dangling link."""
    outside = tmp_path / "outside"
    (outside / "sub").mkdir(parents=True)
    (outside / "secret.txt").write_text("not for this project")
    (outside / "sub" / "other.txt").write_text("another client's file")
    root = tmp_path / "in"
    (root / "a").mkdir(parents=True)
    (root / "a" / "order.txt").write_text("ORDER")
    (root / "brief.pdf").write_bytes(b"%PDF-1.4")
    (root / "photo.gif").write_bytes(b"GIF89a")  # images we OCR are taken; GIFs not
    (root / "inside-link.txt").symlink_to(root / "a" / "order.txt")  # stays inside: fine
    (root / "inside-dir").symlink_to(root / "a", target_is_directory=True)
    (root / "escape.txt").symlink_to(outside / "secret.txt")
    (root / "escape-dir").symlink_to(outside / "sub", target_is_directory=True)
    (root / "a" / "up").symlink_to(root, target_is_directory=True)  # a loop back to the root
    (root / "self.txt").symlink_to(root / "self.txt")  # a link to itself
    (root / "dangling.txt").symlink_to(tmp_path / "gone.txt")
    return root


def test_links_out_of_the_input_are_skipped_with_their_reason(tree: Path) -> None:
    found = discover([tree])
    keys = [k for _, k in found.files]
    assert keys == ["a/order.txt", "brief.pdf", "inside-dir/order.txt", "inside-link.txt"]
    assert found.reasons == {
        "a/up": LINK_LOOP,
        "dangling.txt": LINK_BROKEN,
        "escape-dir": LINK_ESCAPES,
        "escape.txt": LINK_ESCAPES,
        "inside-dir/up": LINK_LOOP,  # the same loop, met through the inside link
        "photo.gif": NOT_A_DOCUMENT,
        "self.txt": LINK_LOOP,
    }
    assert sorted(found.skipped) == sorted(found.reasons)
    # Nothing read from outside the folder.
    assert all(p.resolve().is_relative_to(tree.resolve()) for p, _ in found.files)


def test_follow_symlinks_takes_links_out_but_still_stops_loops(tree: Path) -> None:
    found = discover([tree], follow_symlinks=True)
    keys = {k for _, k in found.files}
    assert {"escape.txt", "escape-dir/other.txt", "a/order.txt", "inside-link.txt"} <= keys
    assert found.reasons["a/up"] == LINK_LOOP
    assert found.reasons["self.txt"] == LINK_LOOP
    assert found.reasons["dangling.txt"] == LINK_BROKEN
    assert LINK_ESCAPES not in found.reasons.values()


def test_a_loop_through_two_folders_ends(tmp_path: Path) -> None:
    root = tmp_path / "in"
    (root / "x").mkdir(parents=True)
    (root / "y").mkdir()
    (root / "x" / "to-y").symlink_to(root / "y", target_is_directory=True)
    (root / "y" / "to-x").symlink_to(root / "x", target_is_directory=True)
    (root / "x" / "doc.txt").write_text("text")
    found = discover([root], follow_symlinks=True)
    keys = [k for _, k in found.files]
    # x/doc.txt is reached directly and through y/to-x; the walk never goes round again.
    assert keys == ["x/doc.txt", "y/to-x/doc.txt"]
    assert found.reasons == {"x/to-y/to-x": LINK_LOOP, "y/to-x/to-y": LINK_LOOP}


def test_exclude_and_hidden_files_are_unchanged(tmp_path: Path) -> None:
    root = tmp_path / "in"
    (root / "truth").mkdir(parents=True)
    (root / ".git").mkdir()
    (root / ".git" / "HEAD.txt").write_text("x")
    (root / "truth" / "labels.json").write_text("{}")
    (root / "keep.txt").write_text("x")
    (root / ".hidden.txt").write_text("x")
    found = discover([root], ["truth/*"])
    assert [k for _, k in found.files] == ["keep.txt"]
    assert found.skipped == []


def test_an_input_that_is_itself_a_link_is_walked(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    (real / "doc.txt").write_text("x")
    link = tmp_path / "link"
    os.symlink(real, link, target_is_directory=True)
    found = discover([link])
    assert [k for _, k in found.files] == ["doc.txt"]

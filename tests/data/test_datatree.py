"""The data fingerprint the workflow tracks (pfs.data.datatree): it changes with what the jobs would read, and not with
where the data lies or with files they skip."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from pfs.data.datatree import class_folders, fingerprint, image_names


def _tree(root: Path) -> Path:
    for split, n in (("train", 3), ("val", 1)):
        for name in ("n02", "n01"):
            (root / split / name).mkdir(parents=True)
            for i in range(n):
                (root / split / name / f"x{i}.JPEG").write_bytes(b"")
    return root


def test_image_names_and_class_folders_skip_hidden_and_non_image_entries(tmp_path):
    root = _tree(tmp_path / "t")
    (root / "train" / ".cache").mkdir()
    (root / "train" / "n01" / "._x0.JPEG").write_bytes(b"")
    (root / "train" / "n01" / "notes.txt").write_text("")
    (root / "train" / "n01" / "deeper").mkdir()
    assert class_folders(root / "train") == ["n01", "n02"]
    assert image_names(root / "train" / "n01") == ["x0.JPEG", "x1.JPEG", "x2.JPEG"]


def test_an_imagenet_tree_keeps_its_fingerprint_when_moved_or_given_stray_files(tmp_path):
    root = _tree(tmp_path / "t")
    before = fingerprint("imagenet", root)
    assert fingerprint("imagenet", root) == before  # stable
    moved = tmp_path / "elsewhere" / "imagenet"
    shutil.copytree(root, moved)
    assert fingerprint("imagenet", moved) == before
    (moved / "train" / "n01" / "README.txt").write_text("stray")
    (moved / "val" / ".DS_Store").write_bytes(b"")
    assert fingerprint("imagenet", moved) == before


@pytest.mark.parametrize("change", ["add", "remove", "rename", "new class", "content only"])
def test_an_imagenet_tree_fingerprint_follows_the_images_listed(tmp_path, change):
    root = _tree(tmp_path / "t")
    before = fingerprint("imagenet", root)
    image = root / "train" / "n01" / "x0.JPEG"
    if change == "add":
        (root / "train" / "n01" / "x9.JPEG").write_bytes(b"")
    elif change == "remove":
        image.unlink()
    elif change == "rename":
        image.rename(image.with_name("y0.JPEG"))
    elif change == "new class":
        (root / "val" / "n03").mkdir()
        (root / "val" / "n03" / "z.JPEG").write_bytes(b"")
    else:  # the same names with other bytes: indexing reads no content, so neither does the fingerprint
        image.write_bytes(b"other pixels")
    assert (fingerprint("imagenet", root) == before) is (change == "content only")


def test_a_missing_split_has_a_fingerprint_of_its_own(tmp_path):
    root = _tree(tmp_path / "t")
    before = fingerprint("imagenet", root)
    shutil.rmtree(root / "val")
    assert fingerprint("imagenet", root) != before


def test_cifar_with_the_md5_check_is_fixed_by_it_and_without_follows_the_files(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    assert fingerprint("cifar10", tmp_path) == fingerprint("cifar10", tmp_path / "other")  # MD5-checked when read
    assert fingerprint("cifar10", tmp_path, check_md5=False) == "cifar10 files missing"
    folder.mkdir()
    (folder / "data_batch_1").write_bytes(bytes(3 << 20))  # 3 MiB: its first and last MiB are hashed
    before = fingerprint("cifar10", tmp_path, check_md5=False)
    moved = tmp_path / "moved"
    shutil.copytree(folder, moved / folder.name)
    assert fingerprint("cifar10", moved, check_md5=False) == before
    (folder / "data_batch_1").write_bytes(bytes(3 << 20)[:-1] + b"\x01")  # the last byte changed
    assert fingerprint("cifar10", tmp_path, check_md5=False) != before


def test_the_embedded_digits_have_a_constant_fingerprint(tmp_path):
    assert fingerprint("digits", tmp_path) == fingerprint("digits", tmp_path / "x") == "digits: embedded"

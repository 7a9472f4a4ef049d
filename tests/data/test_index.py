"""Index tables of a class-folder tree (pfs.data.index): what they list and in which order, the trees they refuse,
and the check that finds images that do not decode; on a tiny generated tree."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pfs.core.errors import PfsError
from pfs.data.datatree import IMAGE_EXTENSIONS
from pfs.data.index import index_split, num_classes, prepare_lists, read_list, unreadable_images


def _files_under(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


def test_index_split_lists_images_with_labels_by_sorted_class_name(tiny_imagenet):
    frame = index_split(tiny_imagenet / "train")
    assert list(frame.columns) == ["path", "class_name", "label"]
    assert len(frame) == 12
    assert frame["path"].tolist() == [f"train/{c}/img{i}.JPEG" for c in ("n01", "n02", "n03") for i in range(4)]
    assert frame["class_name"].tolist() == ["n01"] * 4 + ["n02"] * 4 + ["n03"] * 4
    assert frame["label"].tolist() == [0] * 4 + [1] * 4 + [2] * 4
    assert frame["label"].dtype == np.int64
    assert all((tiny_imagenet / p).is_file() for p in frame["path"])


def test_index_split_keeps_only_image_extensions_in_any_case(tmp_path):
    folder = tmp_path / "root" / "train" / "n01"
    folder.mkdir(parents=True)
    names = ["a.jpg", "b.JPEG", "c.Png", "d.ppm", "e.bmp", "f.pgm", "g.tif", "h.TIFF", "i.webp",
             "j.txt", "k.json", "l", "m.jpg.part", ".n.jpg"]
    for name in names:
        (folder / name).write_bytes(b"")
    (folder / "sub.jpg").mkdir()  # a folder named like an image is not an image
    frame = index_split(tmp_path / "root" / "train")
    assert frame["path"].tolist() == [f"train/n01/{n}" for n in names[:9]]
    assert {Path(n).suffix.lower() for n in names[:9]} == IMAGE_EXTENSIONS


def test_index_is_sorted_by_path_within_a_class_whatever_the_creation_order(tmp_path):
    folder = tmp_path / "r" / "val" / "n01"
    folder.mkdir(parents=True)
    for name in ("z.jpg", "B.jpg", "a.jpg", "10.jpg", "9.jpg"):
        (folder / name).write_bytes(b"")
    assert index_split(tmp_path / "r" / "val")["path"].tolist() == [
        "val/n01/10.jpg", "val/n01/9.jpg", "val/n01/B.jpg", "val/n01/a.jpg", "val/n01/z.jpg"]


def test_prepare_lists_writes_train_and_val_tables(tiny_imagenet, tmp_path):
    out = tmp_path / "lists"
    written = prepare_lists(tiny_imagenet, out)
    assert written == {"train": out / "train.csv", "val": out / "val.csv"}
    assert sorted(p.name for p in out.iterdir()) == ["train.csv", "val.csv"]  # no temp files left
    train, val = pd.read_csv(out / "train.csv"), pd.read_csv(out / "val.csv")
    assert len(train) == 12 and len(val) == 6
    assert (out / "val.csv").read_text().splitlines() == [
        "path,class_name,label",
        "val/n01/img0.JPEG,n01,0", "val/n01/img1.JPEG,n01,0",
        "val/n02/img0.JPEG,n02,1", "val/n02/img1.JPEG,n02,1",
        "val/n03/img0.JPEG,n03,2", "val/n03/img1.JPEG,n03,2",
    ]
    pd.testing.assert_frame_equal(read_list(out / "train.csv"), index_split(tiny_imagenet / "train"))
    assert num_classes(read_list(out / "val.csv")) == 3


def _refused(root: Path, out: Path, message: str) -> None:
    with pytest.raises(PfsError, match=message):
        prepare_lists(root, out)
    assert _files_under(out) == []


def test_prepare_lists_refuses_a_missing_val_folder(tiny_imagenet, tmp_path):
    shutil.rmtree(tiny_imagenet / "val")
    _refused(tiny_imagenet, tmp_path / "lists", r"lacks val/; set dataset.root")


def test_prepare_lists_refuses_a_root_without_train_and_val(tmp_path):
    (tmp_path / "empty").mkdir()
    _refused(tmp_path / "empty", tmp_path / "lists", r"lacks train/ and val/")


def test_prepare_lists_refuses_val_classes_that_differ_from_train(tiny_imagenet, tmp_path):
    (tiny_imagenet / "val" / "n03").rename(tiny_imagenet / "val" / "n04")
    _refused(tiny_imagenet, tmp_path / "lists",
             r"val/ has other classes than train/ \(3 vs 3; only in train/: n03; only in val/: n04\)")


def test_prepare_lists_names_at_most_five_missing_classes(tmp_path):
    root = tmp_path / "r"
    for i in range(8):
        (root / "train" / f"c{i}").mkdir(parents=True)
        (root / "train" / f"c{i}" / "x.jpg").write_bytes(b"")
    (root / "val" / "c0").mkdir(parents=True)
    (root / "val" / "c0" / "x.jpg").write_bytes(b"")
    _refused(root, tmp_path / "lists",
             r"\(1 vs 8; only in train/: c1, c2, c3, c4, c5 \(\+2 more\); only in val/: none\)")


def test_prepare_lists_refuses_an_empty_class_folder_and_names_it(tiny_imagenet, tmp_path):
    for f in (tiny_imagenet / "train" / "n02").iterdir():
        f.unlink()
    (tiny_imagenet / "train" / "n02" / "notes.txt").write_text("no images here")
    _refused(tiny_imagenet, tmp_path / "lists", r"class folder .*train/n02 holds no images")


def test_prepare_lists_refuses_a_tree_without_classes(tmp_path):
    root = tmp_path / "r"
    for split in ("train", "val"):
        (root / split).mkdir(parents=True)
        (root / split / "img.jpg").write_bytes(b"")  # flat images, as the ILSVRC val archive unpacks
    _refused(root, tmp_path / "lists", r"r/train has no class folders; expected one sub-folder per class")


def test_prepare_lists_refuses_a_flat_val_folder(tiny_imagenet, tmp_path):
    shutil.rmtree(tiny_imagenet / "val")
    (tiny_imagenet / "val").mkdir()
    (tiny_imagenet / "val" / "ILSVRC2012_val_00000001.JPEG").write_bytes(b"")
    _refused(tiny_imagenet, tmp_path / "lists", r"val has no class folders.*unpacks flat")


def test_read_list_refuses_a_table_with_other_columns(tmp_path):
    path = tmp_path / "train.csv"
    path.write_text("file,label\na.jpg,0\n")
    with pytest.raises(PfsError, match=r"has columns \['file', 'label'\], expected \['path', 'class_name', 'label'\]"):
        read_list(path)


def test_read_list_refuses_labels_with_gaps(tmp_path):
    path = tmp_path / "train.csv"
    path.write_text("path,class_name,label\ntrain/a/x.jpg,a,0\ntrain/c/x.jpg,c,2\n")
    with pytest.raises(PfsError, match="labels are not 0..K-1"):
        read_list(path)


def _corrupt(tree: Path) -> list[str]:
    """A foreign file with an image name and a truncated JPEG in the tree; their paths, relative to it."""
    (tree / "train" / "n01" / "x.JPEG").write_text("not an image")
    whole = (tree / "val" / "n02" / "img1.JPEG").read_bytes()
    (tree / "val" / "n02" / "cut.JPEG").write_bytes(whole[: len(whole) // 2])
    return ["train/n01/x.JPEG", "val/n02/cut.JPEG"]


@pytest.mark.parametrize("workers", [1, 2])
def test_verification_finds_every_undecodable_image(tiny_imagenet, workers):
    bad = _corrupt(tiny_imagenet)
    paths = [p for split in ("train", "val") for p in index_split(tiny_imagenet / split)["path"]]
    found = unreadable_images(tiny_imagenet, paths, workers)
    assert [p for p, _ in found] == bad
    assert "cannot identify image file" in found[0][1] and "truncated" in found[1][1].lower()
    assert unreadable_images(tiny_imagenet, [p for p in paths if p not in bad], workers) == []


def test_list_preparation_with_verification_refuses_undecodable_images_and_writes_no_table(tiny_imagenet, tmp_path):
    bad = _corrupt(tiny_imagenet)
    with pytest.raises(PfsError, match=r"2 of \d+ images cannot be decoded: .*train/n01/x.JPEG, .*val/n02/cut.JPEG; "
                                       "remove or replace them"):
        prepare_lists(tiny_imagenet, tmp_path / "lists", verify_workers=2)
    assert not (tmp_path / "lists").exists() or not list((tmp_path / "lists").iterdir())
    prepare_lists(tiny_imagenet, tmp_path / "lists")  # without verification: indexed (indexing never decodes)
    for path in bad:
        (tiny_imagenet / path).unlink()
    prepare_lists(tiny_imagenet, tmp_path / "lists", verify_workers=2)

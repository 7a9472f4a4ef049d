"""A folder of the user's own images (pfs.data.folder): the index tables, the val_fraction hold-out, the mean and std
in stats.yaml, the trees it refuses, the catalog's facts read from stats.yaml, and the loaders at image_size; on
tiny generated PNG trees."""

from __future__ import annotations

import math
import shutil
from fractions import Fraction
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from pfs_testkit import write_image_folder
from PIL import Image

from pfs.core import catalog
from pfs.core.errors import PfsError
from pfs.data.datasets import gate_learning_sets, make_loader, num_classes_of, training_sets
from pfs.data.datatree import check_folder_tree, fingerprint
from pfs.data.folder import STATS_FILE, hold_out, make_folder_transform, pixel_stats, prepare_folder_lists
from pfs.data.index import index_split
from pfs.data.settings import DataSettings


@pytest.fixture(autouse=True)
def no_folder_stats(monkeypatch):
    """Reading a folder's tables names its stats.yaml in os.environ (catalog.use_folder_stats): undone after each
    test (setenv records the unset original; delenv of an unset variable would record nothing)."""
    monkeypatch.setenv(catalog.FOLDER_STATS_ENV, "")


def _lists(root: Path, out: Path, image_size: int = 16, **kwargs) -> dict[str, Path]:
    return prepare_folder_lists(root, out, image_size, **kwargs)


def _settings(root: Path, out: Path) -> DataSettings:
    return DataSettings("folder", str(root), train_list=str(out / "train.csv"), val_list=str(out / "val.csv"))


def _files_under(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


# --- index, hold-out and class count ------------------------------------------------------------------------------
def test_train_and_val_folders_give_tables_labelled_by_sorted_class_name_and_the_class_count(tmp_path):
    root = write_image_folder(tmp_path / "images", train_per_class=4, val_per_class=2)
    outputs = _lists(root, tmp_path / "lists")
    train, val = pd.read_csv(outputs["train"]), pd.read_csv(outputs["val"])
    assert train["path"].tolist() == [f"train/{c}/img{i}.png" for c in ("cat", "dog", "emu") for i in range(4)]
    assert train["label"].tolist() == [0] * 4 + [1] * 4 + [2] * 4
    assert val["path"].tolist() == [f"val/{c}/img{i}.png" for c in ("cat", "dog", "emu") for i in range(2)]
    stats = yaml.safe_load(outputs["stats"].read_text())
    assert (stats["num_classes"], stats["train_images"], stats["val_images"], stats["image_size"]) == (3, 12, 6, 16)
    assert stats["source"] == "training images" and stats["val_fraction"] == 0.0
    assert num_classes_of(_settings(root, tmp_path / "lists")) == 3


def test_val_fraction_holds_out_that_part_of_every_class_the_same_way_every_time(tmp_path):
    root = write_image_folder(tmp_path / "images", train_per_class=12)
    first = _lists(root, tmp_path / "a", val_fraction=0.25)
    again = _lists(root, tmp_path / "b", val_fraction=0.25)
    train, val = pd.read_csv(first["train"]), pd.read_csv(first["val"])
    assert val.groupby("class_name").size().to_dict() == {"cat": 3, "dog": 3, "emu": 3}  # 12 x 0.25, per class
    assert train.groupby("class_name").size().to_dict() == {"cat": 9, "dog": 9, "emu": 9}
    assert set(train["path"]).isdisjoint(val["path"])
    assert sorted([*train["path"], *val["path"]]) == sorted(index_split(root / "train")["path"])
    assert val.equals(pd.read_csv(again["val"])) and train.equals(pd.read_csv(again["train"]))  # fixed, not random
    assert val["path"].str.startswith("train/").all() and val["label"].tolist() == [0] * 3 + [1] * 3 + [2] * 3
    assert yaml.safe_load(first["stats"].read_text())["val_images"] == 9


def test_a_class_keeps_its_hold_out_when_another_class_is_added(tmp_path):
    root = write_image_folder(tmp_path / "images", classes=("cat", "dog"), train_per_class=10)
    before = pd.read_csv(_lists(root, tmp_path / "a", val_fraction=0.3)["val"])
    shutil.copytree(root / "train" / "dog", root / "train" / "ant")  # a new class sorts first: labels shift
    after = pd.read_csv(_lists(root, tmp_path / "b", val_fraction=0.3)["val"])
    for name in ("cat", "dog"):
        assert before[before["class_name"] == name]["path"].tolist() == after[after["class_name"] == name][
            "path"].tolist()


def test_hold_out_rounds_half_up_keeps_one_of_each_and_refuses_a_class_it_would_empty(tmp_path):
    frame = pd.DataFrame({"path": [f"train/a/{i}.png" for i in range(5)] + ["train/b/0.png", "train/b/1.png"],
                          "class_name": ["a"] * 5 + ["b"] * 2, "label": [0] * 5 + [1] * 2})
    train, val = hold_out(frame, 0.1)
    assert val["class_name"].tolist() == ["a", "b"]  # 0.5 and 0.2 images: at least one held out
    train, val = hold_out(frame, 0.5)
    assert val.groupby("class_name").size().to_dict() == {"a": 3, "b": 1}  # 2.5 -> 3 (half up), 1 -> 1
    with pytest.raises(PfsError, match=r"class folder .*train/b has 2 image\(s\): holding out .*0\.75.* leaves none"):
        hold_out(frame, 0.75, root=tmp_path)
    with pytest.raises(PfsError, match=r"val_fraction must be in \(0, 1\)"):
        hold_out(frame, 1.0)


# --- mean and std -------------------------------------------------------------------------------------------------
COLOURS = {"cat": (255, 0, 10), "dog": (3, 200, 70), "emu": (128, 128, 129)}


def _solid_tree(root: Path, counts: dict[str, int]) -> Path:
    for name, n in counts.items():
        (root / "train" / name).mkdir(parents=True)
        for i in range(n):  # other sizes and aspect ratios: every image still gives image_size^2 pixels
            Image.new("RGB", (20 + 7 * i, 24 - 3 * i), COLOURS[name]).save(root / "train" / name / f"{i}.png")
    return root


def test_mean_and_std_are_exact_over_the_training_images(tmp_path):
    counts = {"cat": 2, "dog": 3, "emu": 4}
    root = _solid_tree(tmp_path / "images", counts)
    (root / "val").mkdir()
    shutil.copytree(root / "train" / "cat", root / "val" / "cat")
    for name in ("dog", "emu"):  # val images never count: one solid black image per class
        (root / "val" / name).mkdir()
        Image.new("RGB", (8, 8)).save(root / "val" / name / "0.png")
    stats = yaml.safe_load(_lists(root, tmp_path / "lists", image_size=12)["stats"].read_text())
    n = sum(counts.values())
    for c in range(3):
        total = sum(counts[k] * COLOURS[k][c] for k in counts)
        squares = sum(counts[k] * COLOURS[k][c] ** 2 for k in counts)
        assert stats["mean"][c] == float(Fraction(total, n * 255))  # exact: a solid image resizes to its colour
        assert stats["std"][c] == pytest.approx(math.sqrt(n * squares - total * total) / (n * 255), rel=1e-15)
    assert stats["resize"] == "Resize(14) + CenterCrop(12)" and stats["source"] == "training images"


def _noise_paths(root: Path) -> list[str]:
    write_image_folder(root, train_per_class=3, size=(23, 17))
    return index_split(root / "train")["path"].tolist()


def test_mean_and_std_are_those_of_the_pixels_evaluation_sees(tmp_path):
    root = tmp_path / "images"
    paths = _noise_paths(root)
    plain = catalog.folder_info(10, (0, 0, 0), (1, 1, 1))  # no normalisation: pixels in [0, 1]
    seen = torch.stack([make_folder_transform(False, plain)(Image.open(root / p).convert("RGB")) for p in paths])
    pixels = (seen * 255).round().double().permute(1, 0, 2, 3).reshape(3, -1) / 255  # float32 k/255 -> exact
    mean, std = pixel_stats(root, paths, 10)
    assert mean == pytest.approx(pixels.mean(1).tolist(), abs=1e-12)
    assert std == pytest.approx(pixels.std(1, correction=0).tolist(), abs=1e-12)


@pytest.mark.slow  # two spawned processes import torch: ~10 s on 2 cores
def test_mean_and_std_are_the_same_in_several_processes(tmp_path, monkeypatch):
    root = tmp_path / "images"
    paths = _noise_paths(root)
    monkeypatch.setattr("pfs.data.folder.PARALLEL_FROM", 1)
    assert pixel_stats(root, paths, 10, workers=2) == pixel_stats(root, paths, 10)  # integer sums: no order effect


def test_given_mean_and_std_are_written_as_given(tmp_path):
    root = write_image_folder(tmp_path / "images", train_per_class=2, val_per_class=1)
    stats = yaml.safe_load(_lists(root, tmp_path / "lists", image_size=32, mean=[0.5, 0.4, 0.3],
                                  std=[0.2, 0.25, 0.3])["stats"].read_text())
    assert (stats["mean"], stats["std"], stats["source"]) == ([0.5, 0.4, 0.3], [0.2, 0.25, 0.3], "config")


def test_training_images_with_one_value_in_a_channel_are_refused(tmp_path):
    root = tmp_path / "images"
    for name in ("a", "b"):
        (root / "train" / name).mkdir(parents=True)
        Image.new("RGB", (9, 9), (10, 20, 30)).save(root / "train" / name / "0.png")
    with pytest.raises(PfsError, match="normalising would divide by 0; give dataset.mean and dataset.std"):
        pixel_stats(root, ["train/a/0.png", "train/b/0.png"], 8)


# --- trees refused, before anything is written ---------------------------------------------------------------------
def _refused(root: Path, out: Path, pattern: str, **kwargs) -> None:
    with pytest.raises(PfsError, match=pattern):
        _lists(root, out, **kwargs)
    assert _files_under(out) == []


def test_val_with_other_classes_is_refused_naming_them(tmp_path):
    root = write_image_folder(tmp_path / "images", train_per_class=2, val_per_class=1)
    shutil.rmtree(root / "val" / "dog")
    shutil.copytree(root / "val" / "cat", root / "val" / "fox")
    message = r"val has other class folders than .*train \(only in train/: dog; only in val/: fox\)"
    _refused(root, tmp_path / "lists", message)
    with pytest.raises(PfsError, match=message):
        check_folder_tree(root)


def test_a_single_class_is_refused(tmp_path):
    root = write_image_folder(tmp_path / "images", classes=("cat",), train_per_class=4)
    _refused(root, tmp_path / "lists", r"train needs at least 2 class folders .*; found only cat/", val_fraction=0.5)


def test_an_empty_class_folder_is_refused_naming_it(tmp_path):
    root = write_image_folder(tmp_path / "images", train_per_class=2, val_per_class=1)
    for image in (root / "train" / "dog").glob("*.png"):
        image.unlink()  # notes.txt and .DS_Store stay: not images
    _refused(root, tmp_path / "lists", r"class folder .*images/train/dog holds no images")


@pytest.mark.parametrize("missing", ["root", "train"])
def test_a_missing_root_or_train_folder_is_refused_naming_the_path_and_the_layout(tmp_path, missing):
    root = write_image_folder(tmp_path / "images", train_per_class=2, val_per_class=1)
    shutil.rmtree(root if missing == "root" else root / "train")
    where = "does not exist" if missing == "root" else "has no train/ folder"
    _refused(root, tmp_path / "lists", rf"dataset folder not found: .*images {where}\. Set dataset.root to the folder "
             r"holding train/<class>/<image> \(one sub-folder per class")


def test_val_folder_and_val_fraction_are_one_or_the_other(tmp_path):
    root = write_image_folder(tmp_path / "images", train_per_class=4, val_per_class=1)
    _refused(root, tmp_path / "lists", r"has val/ and dataset.val_fraction is 0.5; use one", val_fraction=0.5)
    shutil.rmtree(root / "val")
    _refused(root, tmp_path / "lists", r"has train/ but no val/; add val/<class>/<image> .* or set "
             r"dataset.val_fraction")


def test_an_undecodable_image_is_named_by_the_mean_and_std_pass_and_by_verify_images(tmp_path):
    root = write_image_folder(tmp_path / "images", train_per_class=2, val_per_class=1)
    bad = root / "val" / "dog" / "broken.png"
    bad.write_text("not an image")
    _refused(root, tmp_path / "lists", rf"1 of 10 images cannot be decoded: {bad}", mean=[0.5] * 3, std=[0.2] * 3,
             verify_workers=1)
    bad.rename(root / "train" / "dog" / "broken.png")  # a training image: the mean and std pass reads it
    _refused(root, tmp_path / "lists", r"cannot decode image .*train/dog/broken.png .*remove or replace the file")


def test_the_fingerprint_covers_val_and_changes_when_an_image_is_added(tmp_path):
    root = write_image_folder(tmp_path / "images", train_per_class=2, val_per_class=1)
    before = fingerprint("folder", root)
    assert before.startswith("folder tree ") and before == fingerprint("folder", root)
    shutil.copy(root / "val" / "cat" / "img0.png", root / "val" / "cat" / "img9.png")
    assert fingerprint("folder", root) != before
    assert check_folder_tree(root) == ["cat", "dog", "emu"]


# --- the catalog's facts and the loaders ---------------------------------------------------------------------------
def test_the_catalog_reads_the_folder_facts_from_the_stats_file_and_a_changed_file_again(tmp_path):
    assert catalog.dataset_info("folder") == catalog.DATASETS["folder"]  # nothing named yet: the stand-ins
    assert catalog.dataset_info("folder").domain == "any" and catalog.DEFAULT_IMAGE_SIZE == 64
    root = write_image_folder(tmp_path / "images", train_per_class=2, val_per_class=1)
    stats = _lists(root, tmp_path / "lists", image_size=24, mean=[0.5] * 3, std=[0.25] * 3)["stats"]
    catalog.use_folder_stats(stats)
    info = catalog.dataset_info("folder")
    assert (info.image_size, info.mean, info.std, info.num_classes) == (24, (0.5,) * 3, (0.25,) * 3, 3)
    doc = yaml.safe_load(stats.read_text())
    stats.write_text(yaml.safe_dump({**doc, "image_size": 40, "train_images": 12345}))
    assert catalog.dataset_info("folder").image_size == 40
    stats.write_text(yaml.safe_dump({k: v for k, v in doc.items() if k != "std"}))
    with pytest.raises(catalog.CatalogError, match=r"stats.yaml lacks a valid 'std'.*rerun prepare_folder_list"):
        catalog.dataset_info("folder")


def test_every_arch_fits_a_folder_dataset():
    for arch in catalog.arch_names():
        catalog.check_arch_fits(arch, "folder")


def test_the_loaders_give_normalised_images_of_image_size_with_the_stats_of_stats_yaml(tmp_path):
    root = write_image_folder(tmp_path / "images", train_per_class=6, size=(20, 24))
    _lists(root, tmp_path / "lists", image_size=16, val_fraction=0.25)
    settings = _settings(root, tmp_path / "lists")
    train, val = training_sets(settings)
    assert (len(train), len(val)) == (12, 6)  # 6 x 0.25 = 1.5 -> 2 of each class held out
    assert catalog.dataset_info("folder").image_size == 16  # reading the tables named their stats.yaml
    images, labels = next(iter(make_loader(train, 4, True, 0, torch.device("cpu"))))
    assert images.shape == (4, 3, 16, 16) and images.dtype == torch.float32 and labels.dtype == torch.int64
    seen = torch.stack([val[i][0] for i in range(len(val))])
    info = catalog.dataset_info("folder")
    plain = torch.stack([make_folder_transform(False, catalog.folder_info(16, (0,) * 3, (1,) * 3))(
        Image.open(root / p).convert("RGB")) for p in pd.read_csv(tmp_path / "lists" / "val.csv")["path"]])
    expected = (plain - torch.tensor(info.mean).view(3, 1, 1)) / torch.tensor(info.std).view(3, 1, 1)
    assert torch.allclose(seen, expected, atol=1e-6)
    gate_train, gate_val, held = gate_learning_sets(settings, 0, 0, val_per_class=2)
    assert (len(gate_train), len(gate_val), len(held)) == (6, 6, 6)
    assert gate_train[0][0].shape == gate_val[0][0].shape == (3, 16, 16)


def test_tables_without_their_stats_file_are_refused(tmp_path):
    root = write_image_folder(tmp_path / "images", train_per_class=2, val_per_class=1)
    _lists(root, tmp_path / "lists")
    (tmp_path / "lists" / STATS_FILE).unlink()
    with pytest.raises(PfsError, match=r"stats.yaml.*rerun prepare_folder_list"):
        training_sets(_settings(root, tmp_path / "lists"))
    with pytest.raises(PfsError, match="run prepare_folder_list first"):
        num_classes_of(DataSettings("folder", str(root)))


def test_colour_augmentation_is_refused_for_a_folder(tmp_path):
    with pytest.raises(PfsError, match="dataset folder has no colour augmentation"):
        training_sets(DataSettings("folder", str(tmp_path)), color_augment=True)


def test_the_policy_is_the_imagenet_transform_at_image_size(tmp_path):
    info = catalog.folder_info(16, (0.5,) * 3, (0.25,) * 3)
    names = [type(t).__name__ for t in make_folder_transform(True, info).transforms]
    assert names == ["ToImage", "RandomResizedCrop", "RandomHorizontalFlip", "ToDtype", "Normalize"]
    crop = make_folder_transform(True, info).transforms[1]
    assert (tuple(crop.size), crop.scale) == ((16, 16), (0.25, 1.0))
    resize, centre = make_folder_transform(False, info).transforms[1:3]
    assert (list(resize.size), tuple(centre.size)) == ([18], (16, 16))  # round(16 x 8/7)
    assert np.isclose(make_folder_transform(False, info)(Image.new("RGB", (7, 50), (255, 0, 128))).numpy(),
                      np.array([2.0, -2.0, (128 / 255 - 0.5) / 0.25])[:, None, None], atol=1e-5).all()

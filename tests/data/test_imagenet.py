"""ImageNet's readers (pfs.data.imagenet): transforms, colour augmentation, the gate split and the sets, and
pfs.data.datasets reading ImageNet through its index tables; on a tiny generated folder tree."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pandas as pd
import pytest
import torch
from pfs_testkit import TRAIN_PER_CLASS, VAL_PER_CLASS, write_tiny_imagenet
from PIL import Image

from pfs.core.catalog import DATASETS
from pfs.core.errors import PfsError
from pfs.data.datasets import gate_learning_sets, load_images, make_loader, num_classes_of, training_sets
from pfs.data.imagenet import (
    IMAGENET_EIGVAL,
    IMAGENET_EIGVEC,
    IndexedImageDataset,
    Lighting,
    imagenet_gate_learning_sets,
    imagenet_gate_split,
    imagenet_training_sets,
    make_imagenet_transform,
)
from pfs.data.index import index_split, prepare_lists, read_list
from pfs.data.settings import DataSettings

# ---------------------------------------------------------------- index_split / prepare_lists


# ---------------------------------------------------------------- reading images


@pytest.mark.parametrize("train", [True, False])
def test_indexed_dataset_gives_normalised_224_tensors_and_labels(tiny_imagenet, train):
    frame = index_split(tiny_imagenet / ("train" if train else "val"))
    ds = IndexedImageDataset(tiny_imagenet, frame, make_imagenet_transform(train, min_scale=0.25))
    assert len(ds) == (12 if train else 6)
    image, label = ds[len(ds) - 1]
    assert image.shape == (3, 224, 224) and image.dtype == torch.float32
    assert label == 2 and isinstance(label, int)


def test_eval_transform_normalises_with_the_imagenet_mean_and_std():
    # a solid colour survives resize and centre crop exactly, so every pixel is (value/255 - mean) / std
    out = make_imagenet_transform(train=False)(Image.new("RGB", (40, 30), (255, 0, 128)))
    info = DATASETS["imagenet"]
    expected = [(v / 255 - m) / s for v, m, s in zip((255, 0, 128), info.mean, info.std, strict=True)]
    assert out.shape == (3, 224, 224)
    torch.testing.assert_close(out.mean(dim=(1, 2)), torch.tensor(expected), atol=1e-4, rtol=0)
    torch.testing.assert_close(out.std(dim=(1, 2)), torch.zeros(3), atol=1e-4, rtol=0)


def test_imagenet_transforms_follow_the_official_augmentation():
    from torchvision.transforms import v2

    train = make_imagenet_transform(train=True, min_scale=0.25).transforms
    assert [type(t) for t in train] == [v2.ToImage, v2.RandomResizedCrop, v2.RandomHorizontalFlip, v2.ToDtype,
                                        v2.Normalize]
    assert tuple(train[1].size) == (224, 224) and train[1].scale == (0.25, 1.0)
    assert make_imagenet_transform(train=True).transforms[1].scale == (0.08, 1.0)  # ResNet-50's default
    val = make_imagenet_transform(train=False).transforms
    assert [type(t) for t in val] == [v2.ToImage, v2.Resize, v2.CenterCrop, v2.ToDtype, v2.Normalize]
    assert list(val[1].size) == [256] and tuple(val[2].size) == (224, 224)


def test_color_augment_adds_the_official_jitter_and_lighting_between_crop_and_flip():
    from torchvision.transforms import v2

    train = make_imagenet_transform(train=True, min_scale=0.25, color_augment=True).transforms
    assert [type(t) for t in train] == [v2.ToImage, v2.RandomResizedCrop, v2.ColorJitter, v2.ToDtype, Lighting,
                                        v2.RandomHorizontalFlip, v2.ToDtype, v2.Normalize]
    jitter = train[2]
    assert jitter.brightness == jitter.contrast == jitter.saturation == (0.6, 1.4) and jitter.hue is None
    assert train[4].alphastd == 0.1


def _grey_draws(color_augment: bool, n: int = 150) -> torch.Tensor:
    """Per-channel means of ``n`` augmented draws of a mid-grey image, back in [0, 1] pixel units (n x 3)."""
    info = dataclasses.replace(DATASETS["imagenet"], image_size=32)  # 32x32 crops: the same statistics, faster
    grey = Image.new("RGB", (40, 30), (128, 128, 128))
    transform = make_imagenet_transform(train=True, min_scale=0.25, info=info, color_augment=color_augment)
    torch.manual_seed(0)
    means = torch.stack([transform(grey).mean(dim=(1, 2)) for _ in range(n)])
    return means * torch.tensor(info.std) + torch.tensor(info.mean)


def test_color_jitter_changes_the_brightness_of_each_image_and_no_jitter_leaves_it():
    plain, jittered = _grey_draws(False), _grey_draws(True)
    # crops and flips of a solid grey image are that grey image
    torch.testing.assert_close(plain, torch.full_like(plain, 128 / 255), atol=1e-3, rtol=0)
    # on a grey image contrast and saturation change nothing: the brightness factor, uniform in [0.6, 1.4], does
    factor = jittered.mean(dim=1) / (128 / 255)
    assert factor.min() < 0.7 and factor.max() > 1.3
    assert factor.min() > 0.5 and factor.max() < 1.5  # the lighting noise moves it by ~0.025 (one std) too
    assert 0.18 < float(factor.std()) < 0.28  # uniform on [0.6, 1.4]: std 0.8 / sqrt(12) = 0.23


def test_lighting_adds_one_rgb_offset_per_image_with_the_pca_covariance():
    lighting, image = Lighting(), torch.full((3, 4, 4), 0.5)
    torch.manual_seed(0)
    draws = torch.stack([lighting(image) - image for _ in range(20_000)])  # n x 3 x 4 x 4
    offsets = draws[:, :, 0, 0].double()
    torch.testing.assert_close(draws, offsets[:, :, None, None].float().expand_as(draws))  # constant per image
    eigvec, eigval = torch.tensor(IMAGENET_EIGVEC).double(), torch.tensor(IMAGENET_EIGVAL).double()
    expected = eigvec @ torch.diag((0.1 * eigval) ** 2) @ eigvec.T  # ~1.6e-4 each; sampling error ~1.6e-6
    torch.testing.assert_close(offsets.T.cov(), expected, atol=1e-5, rtol=0)
    torch.testing.assert_close(offsets.mean(0), torch.zeros(3, dtype=torch.float64), atol=5e-4, rtol=0)


def test_lighting_draws_from_the_global_seed_and_clips_to_the_pixel_range():
    lighting, image = Lighting(alphastd=50.0), torch.rand(3, 8, 8)
    torch.manual_seed(3)
    first = lighting(image)
    torch.manual_seed(3)
    assert torch.equal(lighting(image), first)  # the training loop's per-epoch seed fixes it
    assert not torch.equal(lighting(image), first)
    assert first.min() >= 0 and first.max() <= 1 and (first == 1).any() | (first == 0).any()
    with pytest.raises(TypeError, match="float images"):
        lighting(torch.zeros(3, 2, 2, dtype=torch.uint8))


def test_colour_augmentation_reaches_training_from_scratch_only(tiny_imagenet, tmp_path):
    lists = prepare_lists(tiny_imagenet, tmp_path / "lists")
    settings = _settings(tiny_imagenet, lists)

    def colour(dataset) -> bool:
        return any(isinstance(t, Lighting) for t in dataset.transform.transforms)

    train, test = training_sets(settings, min_scale=0.25, color_augment=True)
    assert colour(train) and not colour(test)
    assert not any(map(colour, training_sets(settings, min_scale=0.25)))
    frame = read_list(lists["train"])
    assert not any(map(colour, imagenet_training_sets(tiny_imagenet, frame, frame, 0.25)))
    gate_train, gate_val, _ = gate_learning_sets(settings, val_size=0, split_seed=0, val_per_class=1)
    assert not colour(gate_train) and not colour(gate_val)  # the official gate learning has no colour jitter
    image, _ = train[0]
    assert image.shape == (3, 224, 224) and image.dtype == torch.float32
    with pytest.raises(PfsError, match="training transforms only"):
        make_imagenet_transform(train=False, color_augment=True)


@pytest.mark.parametrize("min_scale", [0.0, -0.1, 1.5])
def test_transform_refuses_a_crop_scale_outside_zero_one(min_scale):
    with pytest.raises(PfsError, match=f"min_scale .* must be in \\(0, 1\\], got {min_scale}"):
        make_imagenet_transform(train=True, min_scale=min_scale)


def test_greyscale_images_are_read_as_rgb(tmp_path):
    (tmp_path / "train" / "n01").mkdir(parents=True)
    Image.new("L", (40, 30), 255).save(tmp_path / "train" / "n01" / "grey.JPEG")
    ds = IndexedImageDataset(tmp_path, index_split(tmp_path / "train"), make_imagenet_transform(False))
    image, label = ds[0]
    assert image.shape == (3, 224, 224) and label == 0


def test_a_missing_image_file_is_a_pfs_error_naming_it(tiny_imagenet):
    frame = index_split(tiny_imagenet / "val")
    (tiny_imagenet / frame["path"][3]).unlink()
    ds = IndexedImageDataset(tiny_imagenet, frame, make_imagenet_transform(False))
    with pytest.raises(PfsError, match=r"image .*val/n02/img1.JPEG is listed in the index but missing: check "
                                       r"dataset.root"):
        ds[3]


@pytest.mark.parametrize("workers", [0, 1, 2])
def test_a_corrupt_image_is_one_line_naming_it_and_the_fix_whatever_the_worker_count(tiny_imagenet, workers):
    frame = index_split(tiny_imagenet / "val")
    (tiny_imagenet / frame["path"][0]).write_bytes(b"not a jpeg")
    ds = IndexedImageDataset(tiny_imagenet, frame, make_imagenet_transform(False))
    loader = make_loader(ds, batch_size=2, train=False, num_workers=workers, device=torch.device("cpu"))
    with pytest.raises(PfsError) as info:
        list(loader)
    message = str(info.value)
    assert "\n" not in message and "Caught" not in message and "Traceback" not in message
    assert f"cannot decode image {tiny_imagenet / frame['path'][0]}" in message
    assert "remove or replace the file" in message and f"verify-images --root {tiny_imagenet}" in message


def test_pfs_errors_from_other_worker_exceptions_keep_their_text():
    assert str(PfsError("plain message")) == "plain message"
    assert str(PfsError("Caught PfsError in something else.\nmore")) == "Caught PfsError in something else.\nmore"
    wrapped = ("Caught PfsError in DataLoader worker process 3.\nOriginal Traceback (most recent call last):\n"
               '  File "x.py", line 1, in f\npfs.errors.PfsError: the one line: with a colon')
    assert str(PfsError(wrapped)) == "the one line: with a colon"


def test_a_loader_batches_indexed_images(tiny_imagenet):
    frame = index_split(tiny_imagenet / "train")
    ds = IndexedImageDataset(tiny_imagenet, frame, make_imagenet_transform(True, 0.25))
    images, labels = next(iter(torch.utils.data.DataLoader(ds, batch_size=5)))
    assert images.shape == (5, 3, 224, 224)
    assert labels.tolist() == [0, 0, 0, 0, 1] and labels.dtype == torch.int64


def test_indexed_dataset_refuses_a_frame_without_labels(tiny_imagenet):
    with pytest.raises(PfsError, match="lacks label"):
        IndexedImageDataset(tiny_imagenet, pd.DataFrame({"path": ["a.jpg"]}), make_imagenet_transform(False))


def test_imagenet_is_not_loaded_into_memory():
    with pytest.raises(PfsError, match="imagenet is not held in memory: read it through its index tables"):
        load_images(DataSettings("imagenet"), train=True)


def test_imagenet_dataset_info():
    info = DATASETS["imagenet"]
    assert (info.num_classes, info.image_size) == (1000, 224)
    assert info.mean == (0.485, 0.456, 0.406) and info.std == (0.229, 0.224, 0.225)


# ---------------------------------------------------------------- gate-learning split


def _synthetic_index(per_class: tuple[int, ...]) -> pd.DataFrame:
    rows = [(f"train/c{label}/img{i:03d}.jpg", f"c{label}", label) for label, n in enumerate(per_class)
            for i in range(n)]
    return pd.DataFrame(rows, columns=["path", "class_name", "label"])


def test_gate_split_holds_out_per_class_images_of_every_class():
    frame = _synthetic_index((60, 75, 51))
    train, val = imagenet_gate_split(frame, per_class=50, seed=0)
    assert val.groupby("label").size().tolist() == [50, 50, 50]
    assert train.groupby("label").size().tolist() == [10, 25, 1]
    assert set(train["path"]).isdisjoint(val["path"])
    assert set(train["path"]) | set(val["path"]) == set(frame["path"])
    for part in (train, val):  # both sorted by (label, path)
        assert part.equals(part.sort_values(["label", "path"], ignore_index=True))


def test_gate_split_is_fixed_by_the_seed_not_by_row_order():
    frame = _synthetic_index((8, 9, 10))
    train, val = imagenet_gate_split(frame, per_class=3, seed=7)
    shuffled = frame.sample(frac=1.0, random_state=123).reset_index(drop=True)
    train2, val2 = imagenet_gate_split(shuffled, per_class=3, seed=7)
    pd.testing.assert_frame_equal(val, val2)
    pd.testing.assert_frame_equal(train, train2)
    assert val["path"].tolist() != imagenet_gate_split(frame, per_class=3, seed=8)[1]["path"].tolist()


def test_gate_split_of_a_class_does_not_depend_on_the_other_classes():
    small = imagenet_gate_split(_synthetic_index((8, 9)), per_class=3, seed=1)[1]
    large = imagenet_gate_split(_synthetic_index((8, 9, 30, 40)), per_class=3, seed=1)[1]
    pd.testing.assert_frame_equal(small, large[large["label"] < 2])


def test_gate_split_refuses_classes_with_too_few_images():
    with pytest.raises(PfsError, match=r"1 classes have 50 images or fewer.*label 1 \(50 images\)"):
        imagenet_gate_split(_synthetic_index((51, 50, 60)), per_class=50, seed=0)


def test_gate_learning_sets_read_the_held_out_part_like_validation(tiny_imagenet):
    frame = index_split(tiny_imagenet / "train")
    train, val, held = imagenet_gate_learning_sets(tiny_imagenet, frame, min_scale=0.25, per_class=1, seed=0)
    assert (len(train), len(val)) == (9, 3)
    assert held["label"].tolist() == [0, 1, 2]
    image, label = val[2]
    assert image.shape == (3, 224, 224) and label == 2


# ---------------------------------------------------------------- the pipeline's ImageNet data sets


def _settings(root: Path, lists: dict[str, Path]) -> DataSettings:
    return DataSettings("imagenet", root=str(root), train_list=str(lists["train"]), val_list=str(lists["val"]))


def test_gate_learning_and_training_sets_read_the_index_tables(tiny_imagenet, tmp_path):
    lists = prepare_lists(tiny_imagenet, tmp_path / "lists")
    settings = _settings(tiny_imagenet, lists)
    assert num_classes_of(settings) == 3
    train, val, val_idx = gate_learning_sets(settings, val_size=999, split_seed=0, val_per_class=1)
    assert (len(train), len(val)) == (3 * (TRAIN_PER_CLASS - 1), 3)
    frame = read_list(lists["train"])
    held = frame.iloc[val_idx.tolist()]
    assert sorted(held["label"]) == [0, 1, 2]  # one row of the training table per class
    assert set(held["path"]).isdisjoint(train.paths)
    whole, test = training_sets(settings, min_scale=0.25)
    assert (len(whole), len(test)) == (3 * TRAIN_PER_CLASS, 3 * VAL_PER_CLASS)
    x, y = whole[0]
    assert x.shape == (3, 224, 224) and y == 0


def test_imagenet_sets_need_the_root_and_the_index_tables(tiny_imagenet, tmp_path):
    lists = prepare_lists(tiny_imagenet, tmp_path / "lists")
    with pytest.raises(PfsError, match=r"dataset imagenet not found: .*nowhere lacks train/ and val/"):
        training_sets(_settings(tmp_path / "nowhere", lists))
    with pytest.raises(PfsError, match="run prepare_imagenet_list first"):
        training_sets(DataSettings("imagenet", root=str(tiny_imagenet)))


def test_index_tables_of_different_trees_are_refused(tiny_imagenet, tmp_path):
    lists = prepare_lists(tiny_imagenet, tmp_path / "lists")
    other = prepare_lists(write_tiny_imagenet(tmp_path / "other", classes=("a", "b", "c")), tmp_path / "other_lists")
    with pytest.raises(PfsError, match="list other classes"):
        training_sets(DataSettings("imagenet", root=str(tiny_imagenet), train_list=str(lists["train"]),
                                   val_list=str(other["val"])))


def test_distributed_evaluation_reads_every_image_once(tiny_imagenet):
    data = torch.utils.data.TensorDataset(torch.arange(7))
    seen = []
    for rank in range(3):
        loader = make_loader(data, 2, False, 0, torch.device("cpu"), rank=rank, world_size=3)
        seen += [int(v) for (batch,) in loader for v in batch]
    assert sorted(seen) == list(range(7))  # no padding repeats: sums over ranks are exact

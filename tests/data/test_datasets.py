"""Datasets through the real loaders: the tiny CIFAR-10 folder, embedded digits, splits, transforms, devices."""

from __future__ import annotations

import gzip
import json
import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch
from torchvision.transforms import v2

from pfs.core.catalog import DATASETS, dataset_info
from pfs.core.errors import PfsError
from pfs.data import datasets as data
from pfs.data.datasets import gate_learning_sets, load_images, make_transform, split_train_val
from pfs.data.settings import DataSettings
from pfs.training.loaders import uses_device_data

BATCHES = [f"data_batch_{i}" for i in range(1, 6)]


def _read_batches(root, names):
    images, labels = [], []
    for name in names:
        with open(root / "cifar-10-batches-py" / name, "rb") as fh:
            batch = pickle.load(fh)
        images.append(batch["data"].reshape(-1, 3, 32, 32))
        labels += batch["labels"]
    return torch.from_numpy(np.concatenate(images)), torch.tensor(labels, dtype=torch.int64)


def _cifar(root, **kw) -> DataSettings:
    return DataSettings("cifar10", root=str(root), **{"check_md5": False, **kw})


# ---------------------------------------------------------------- CIFAR-10 folder


@pytest.mark.parametrize(("train", "names", "n"), [(True, BATCHES, 100), (False, ["test_batch"], 30)])
def test_tiny_cifar10_is_read_as_uint8_images_and_int64_labels(tiny_cifar10, train, names, n):
    images, labels = load_images(_cifar(tiny_cifar10), train=train)
    assert images.shape == (n, 3, 32, 32) and images.dtype == torch.uint8
    assert labels.shape == (n,) and labels.dtype == torch.int64
    want_images, want_labels = _read_batches(tiny_cifar10, names)
    assert torch.equal(labels, want_labels)
    assert torch.equal(images, want_images)


def test_cifar10_with_md5_check_refuses_files_that_are_not_the_real_ones(tiny_cifar10):
    with pytest.raises(PfsError, match="MD5"):
        load_images(_cifar(tiny_cifar10, check_md5=True), train=True)


def test_missing_cifar_folder_names_the_path_and_the_settings_to_change(tmp_path):
    root = tmp_path / "nothing_here"
    with pytest.raises(PfsError) as err:
        load_images(_cifar(root), train=True)
    message = str(err.value)
    assert str(root / "cifar-10-batches-py") in message
    assert "dataset.root" in message and "dataset.download: true" in message


def test_truncated_cifar_batch_file_is_reported_as_corrupt(tiny_cifar10):
    batch = tiny_cifar10 / "cifar-10-batches-py" / "data_batch_3"
    batch.write_bytes(batch.read_bytes()[:500])
    with pytest.raises(PfsError, match="corrupt batch file") as err:
        load_images(_cifar(tiny_cifar10), train=True)
    assert f"corrupt batch file {batch} (UnpicklingError" in str(err.value)


def test_missing_cifar_batch_file_is_reported(tiny_cifar10):
    (tiny_cifar10 / "cifar-10-batches-py" / "test_batch").unlink()
    with pytest.raises(PfsError, match="missing files or fails its MD5 check"):
        load_images(_cifar(tiny_cifar10), train=False)


def test_unknown_dataset_names_the_known_ones():
    with pytest.raises(PfsError, match="unknown dataset 'mnist'; known: digits, cifar10, cifar100"):
        dataset_info("mnist")


# ---------------------------------------------------------------- digits


def test_digits_splits_have_the_documented_sizes_and_shapes():
    train_x, train_y = load_images(DataSettings("digits"), train=True)
    test_x, test_y = load_images(DataSettings("digits"), train=False)
    assert train_x.shape == (1437, 3, 16, 16) and test_x.shape == (360, 3, 16, 16)
    assert train_x.dtype == test_x.dtype == torch.uint8
    assert train_y.dtype == torch.int64 and set(train_y.tolist()) == set(range(10))
    assert torch.equal(train_x[:, 0], train_x[:, 1]) and torch.equal(train_x[:, 0], train_x[:, 2])  # grey as RGB
    assert int(train_x.max()) == 255 and int(train_x.min()) == 0


def test_digits_train_and_test_partition_all_1797_images():
    from sklearn.datasets import load_digits

    _, train_y = load_images(DataSettings("digits"), train=True)
    _, test_y = load_images(DataSettings("digits"), train=False)
    counts = torch.bincount(torch.cat([train_y, test_y]), minlength=10)
    assert counts.tolist() == np.bincount(load_digits().target, minlength=10).tolist()


def test_digits_test_split_is_fixed_whatever_the_global_seed():
    torch.manual_seed(1)
    a = load_images(DataSettings("digits"), train=False)
    torch.manual_seed(2)
    b = load_images(DataSettings("digits"), train=False)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_digits_read_from_the_csv_are_what_sklearns_load_digits_gives():
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images, labels = data._digits_arrays()
    assert images.dtype == bunch.images.dtype and np.array_equal(images, bunch.images)
    assert labels.dtype == bunch.target.dtype and np.array_equal(labels, bunch.target)


def _digits_splits() -> list[torch.Tensor]:
    return [t for train in (True, False) for t in load_images(DataSettings("digits"), train=train)]


_DIGITS_LIKE_CSV = "".join(",".join(map(str, row)) + "\n"
                           for row in np.random.default_rng(0).integers(0, 17, (1797, 65))).encode()
_BAD_DIGITS_CSV = {  # content of the file (None: no file) that makes the loader fall back to sklearn's load_digits
    "missing": None,
    "truncated": gzip.compress(_DIGITS_LIKE_CSV)[:20000],
    "not gzip": b"0,0,5,13\n",
    "not numbers": gzip.compress(b"a,b,c\n" * 1797),
    "other shape": gzip.compress(b",".join([b"1"] * 64) + b"\n"),
    "pixel out of 0..16": gzip.compress((b",".join([b"17"] * 65) + b"\n") * 1797),
}


def test_digits_splits_read_from_the_csv_are_byte_identical_to_those_of_sklearn(monkeypatch):
    from_csv = _digits_splits()
    monkeypatch.setattr(data, "_digits_csv", lambda: None)  # no CSV found: sklearn's load_digits reads it
    from_sklearn = _digits_splits()
    for a, b in zip(from_csv, from_sklearn, strict=True):
        assert a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)


@pytest.mark.parametrize("content", list(_BAD_DIGITS_CSV.values()), ids=list(_BAD_DIGITS_CSV))
def test_a_missing_or_malformed_digits_csv_falls_back_to_sklearn(tmp_path, monkeypatch, content):
    want = _digits_splits()
    bad = tmp_path / "digits.csv.gz"
    if content is not None:
        bad.write_bytes(content)
    monkeypatch.setattr(data, "_digits_csv", lambda: bad)
    for a, b in zip(_digits_splits(), want, strict=True):
        assert torch.equal(a, b)


def test_a_digits_training_job_on_device_data_imports_neither_torchvision_nor_sklearn(tmp_path):
    """Start-up cost that must not come back: torchvision (~2 s) and sklearn (~1 s) in every training job."""
    import snakemake
    import torchvision

    job = {"dataset": "digits", "arch": "resnet20", "seed": 0, "expansion": 2, "device": "cpu",
           "train": {"epochs": 1, "batch_size": 256, "device_data": "always"}, "checkpoint_dir": "checkpoints",
           "outputs": {"model": "model.pt", "metrics": "metrics.json", "history": "history.csv"}}
    code = ("import json, sys\n"
            "from pfs.stages.train import TrainJob, run_job\n"
            f"metrics = run_job(TrainJob.from_json({job!r}))\n"
            "heavy = ['torchvision', 'sklearn', 'scipy', 'snakemake']\n"
            "print(json.dumps({'imported': [m for m in heavy if m in sys.modules], 'metrics': metrics}))\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout.splitlines()[-1])
    assert answer["imported"] == []
    assert answer["metrics"]["epochs"] == 1 and (tmp_path / "metrics.json").is_file()
    versions = answer["metrics"]["versions"]  # read without importing, yet the strings of __version__
    assert versions["torchvision"] == torchvision.__version__ and versions["snakemake"] == snakemake.__version__


# ---------------------------------------------------------------- train/val split


def test_split_train_val_is_deterministic_disjoint_and_complete():
    torch.manual_seed(5)
    train, val = split_train_val(100, 20, split_seed=3)
    torch.manual_seed(6)
    train2, val2 = split_train_val(100, 20, split_seed=3)
    assert torch.equal(train, train2) and torch.equal(val, val2)
    assert len(train) == 80 and len(val) == 20
    assert set(train.tolist()).isdisjoint(val.tolist())
    assert sorted(train.tolist() + val.tolist()) == list(range(100))
    assert torch.equal(train, train.sort().values) and torch.equal(val, val.sort().values)


def test_split_train_val_differs_with_the_seed():
    assert not torch.equal(split_train_val(100, 20, 0)[1], split_train_val(100, 20, 1)[1])


@pytest.mark.parametrize("val_size", [0, -1, 100, 150])
def test_split_train_val_refuses_a_val_size_out_of_range(val_size):
    with pytest.raises(PfsError, match=rf"dataset.val_size must be between 1 and 99 .*got {val_size}"):
        split_train_val(100, val_size, 0)


def test_gate_learning_sets_hold_out_the_recorded_val_indices():
    images, labels = load_images(DataSettings("digits"), train=True)
    train, val, val_idx = gate_learning_sets(DataSettings("digits"), val_size=300, split_seed=0)
    assert len(train) == 1137 and len(val) == 300 and len(val_idx) == 300
    rest = sorted(set(range(1437)) - set(val_idx.tolist()))
    assert torch.equal(val.images, images[val_idx]) and torch.equal(val.labels, labels[val_idx])
    assert torch.equal(train.images, images[rest]) and torch.equal(train.labels, labels[rest])
    assert torch.equal(val_idx, split_train_val(1437, 300, 0)[1])
    _, _, val_idx_b = gate_learning_sets(DataSettings("digits"), val_size=300, split_seed=1)
    assert not torch.equal(val_idx, val_idx_b)


def test_gate_learning_sets_augment_only_the_train_part():
    train, val, _ = gate_learning_sets(DataSettings("digits"), val_size=300, split_seed=0)
    assert any(isinstance(t, v2.RandomCrop) for t in train.transform.transforms)
    assert not any(isinstance(t, v2.RandomCrop) for t in val.transform.transforms)


def test_the_lazily_made_transform_of_an_in_memory_set_works_in_loader_workers():
    _, test = data.training_sets(DataSettings("digits"))
    sent = pickle.loads(pickle.dumps(test))  # as a worker receives it: the transform not made yet
    want = torch.stack([test[i][0] for i in range(8)])
    x, y = next(iter(torch.utils.data.DataLoader(sent, batch_size=8, num_workers=1)))
    assert torch.equal(x, want) and torch.equal(y, test.labels[:8])
    assert torch.equal(want[0], make_transform(DATASETS["digits"], train=False)(test.images[0]))


def test_tensor_image_dataset_takes_a_transform_or_the_info_to_make_one():
    images, labels = torch.zeros(2, 3, 16, 16, dtype=torch.uint8), torch.zeros(2, dtype=torch.int64)
    for bad in ({}, {"transform": v2.Identity(), "info": DATASETS["digits"]}):
        with pytest.raises(ValueError, match="either a transform or the DatasetInfo"):
            data.TensorImageDataset(images, labels, **bad)


# ---------------------------------------------------------------- transforms


def test_train_transform_gives_normalised_float32_of_the_same_shape():
    info = DATASETS["digits"]  # mean 0.5, std 0.25: 255 -> +2, 0 (or crop padding) -> -2
    image = torch.full((3, 16, 16), 255, dtype=torch.uint8)
    torch.manual_seed(0)
    out = make_transform(info, train=True)(image)
    assert out.shape == (3, 16, 16) and out.dtype == torch.float32
    assert set(out.unique().tolist()) <= {-2.0, 2.0}
    assert (out == 2.0).any()


def test_test_transform_is_the_exact_normalisation():
    info = DATASETS["cifar10"]
    image = torch.zeros((3, 32, 32), dtype=torch.uint8)
    image[:, 0, 0] = 255
    out = make_transform(info, train=False)(image)
    assert out.dtype == torch.float32 and out.shape == (3, 32, 32)
    for c in range(3):
        assert out[c, 1, 1].item() == pytest.approx(-info.mean[c] / info.std[c], rel=1e-6)
        assert out[c, 0, 0].item() == pytest.approx((1 - info.mean[c]) / info.std[c], rel=1e-6)


def test_cifar_training_augmentation_flips_and_pads_4_but_digits_never_flips():
    cifar = [type(t) for t in make_transform(DATASETS["cifar10"], train=True).transforms]
    digits = [type(t) for t in make_transform(DATASETS["digits"], train=True).transforms]
    assert cifar == [v2.RandomCrop, v2.RandomHorizontalFlip, v2.ToDtype, v2.Normalize]
    assert digits == [v2.RandomCrop, v2.ToDtype, v2.Normalize]
    assert make_transform(DATASETS["cifar10"], train=True).transforms[0].padding == [4, 4, 4, 4]


def test_training_sets_pair_augmented_train_with_plain_test(tiny_cifar10):
    train, test = data.training_sets(_cifar(tiny_cifar10))
    assert len(train) == 100 and len(test) == 30
    x, y = test[0]
    assert x.shape == (3, 32, 32) and x.dtype == torch.float32 and y.dtype == torch.int64


@pytest.mark.parametrize("name", ["digits", "cifar10"])
def test_color_augment_is_refused_for_datasets_other_than_imagenet(tmp_path, name):
    with pytest.raises(PfsError, match=fr"dataset {name} has no colour augmentation \(train.color_augment is the "
                                       r"official ImageNet .*\): set train.color_augment: false"):
        data.training_sets(DataSettings(name, root=str(tmp_path)), color_augment=True)


# ---------------------------------------------------------------- distributed shards


def _shard_orders(seed: int, epochs: int = 3, world_size: int = 2) -> list[list[list[int]]]:
    """Per epoch, the sample order each rank's training loader reads (as the training loop sets the epoch)."""
    dataset = torch.utils.data.TensorDataset(torch.arange(40))
    loaders = [data.make_loader(dataset, 5, True, 0, torch.device("cpu"), rank=rank, world_size=world_size,
                                seed=seed) for rank in range(world_size)]
    orders = []
    for epoch in range(epochs):
        for loader in loaders:
            loader.sampler.set_epoch(epoch)
        orders.append([[int(v) for (batch,) in loader for v in batch] for loader in loaders])
    return orders


def test_distributed_training_shards_are_shuffled_by_the_runs_seed():
    seed0, seed1 = _shard_orders(0), _shard_orders(1)
    assert _shard_orders(0) == seed0  # the same seed reads the same shards in the same order
    for epoch in range(3):
        assert sorted(seed0[epoch][0] + seed0[epoch][1]) == list(range(40))  # the ranks split the set
        assert seed0[epoch] != seed1[epoch]  # another seed, another order in every epoch
    assert seed0[0] != seed0[1]  # and another order every epoch
    assert seed1[0] not in seed0  # seed 1 does not replay seed 0's epochs one epoch late


def test_tiny_cifar100_folder_is_read_with_its_fine_labels(tmp_path):
    # CIFAR-100's on-disk layout: cifar-100-python/{train,test,meta}, labels under "fine_labels"
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    rng = np.random.default_rng(1)
    written = {}
    for name, n in (("train", 12), ("test", 5)):
        labels = rng.integers(0, 100, n).tolist()
        written[name] = labels
        entry = {"data": rng.integers(0, 256, (n, 3072)).astype(np.uint8), "fine_labels": labels,
                 "coarse_labels": [0] * n}
        with open(folder / name, "wb") as fh:
            pickle.dump(entry, fh)
    with open(folder / "meta", "wb") as fh:
        pickle.dump({"fine_label_names": [f"c{i}" for i in range(100)]}, fh)
    settings = DataSettings("cifar100", root=str(tmp_path), check_md5=False)
    for train, name in ((True, "train"), (False, "test")):
        images, labels = load_images(settings, train=train)
        assert images.shape == (len(written[name]), 3, 32, 32)
        assert labels.tolist() == written[name]
    assert DATASETS["cifar100"].num_classes == 100


@pytest.mark.parametrize("mode, device, dataset, expected", [
    ("auto", "cpu", "cifar10", False),  # on CPU the DataLoader path stays the default
    ("auto", "cuda", "cifar10", True),
    ("auto", "cuda", "imagenet", False),  # read from files
    ("always", "cpu", "digits", True),
    ("auto", "cpu", "digits", True),  # the tiny embedded set: no DataLoader and no torchvision import on CPU either
    ("never", "cpu", "digits", False),
    ("never", "cuda", "cifar10", False),
])
def test_device_data_is_used_on_cuda_for_in_memory_datasets(mode, device, dataset, expected):
    assert uses_device_data(mode, dataset, torch.device(device)) is expected


def test_device_data_on_for_imagenet_is_refused():
    with pytest.raises(PfsError, match="device_data: always needs an in-memory dataset"):
        uses_device_data("always", "imagenet", torch.device("cpu"))

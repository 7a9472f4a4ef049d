"""What the pipeline knows about each dataset and architecture, in one torch-free place.

The model registry (pfs.models), the config checks (pfs.workflow.config, at DAG-building time), the data code
(pfs.data), the results (test-set sizes) and the schema test all read these two tables, and every "this arch does
not fit that dataset" message comes from the checks below. A new architecture is added here (its facts) and in
pfs.models (its builder); a test fails until both agree, and until the schema's enum lists it.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import os
from dataclasses import dataclass
from pathlib import Path

from pfs.core.errors import PfsError

DOMAIN_CLASSES = {"cifar": 10, "imagenet": 1000}  # a domain's input kind; its classes when a model is not told
DOMAIN_NAMES = {"cifar": "a CIFAR", "imagenet": "an ImageNet"}  # for messages: "resnet50 is an ImageNet network"


class CatalogError(PfsError, ValueError):
    """An unknown name, or an arch and dataset (or multiplier) that do not go together."""


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    num_classes: int
    image_size: int  # MACs are counted for one image of this size
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    crop_padding: int  # random-crop padding of the training augmentation (pixels)
    hflip: bool  # horizontal flip is a valid augmentation (not for digits)
    folders: tuple[str, ...]  # sub-folders of dataset.root that must exist (none: embedded in the package)
    # which archs fit it: small 32x32-style inputs ("cifar"), 224x224 ("imagenet"), or every arch ("any": a folder of
    # the user's images, at the size the config asks)
    domain: str = "cifar"
    in_memory: bool = True  # held whole as uint8 tensors; False: image files read through index tables
    downloadable: bool = False  # torchvision can download it (dataset.download: true)
    color_augment: bool = False  # the official colour jitter and lighting noise exist for it (ImageNet only)
    # the split our top-1 is measured on ("test": CIFAR's test batch, digits' held-out part; "val": ImageNet's
    # validation folder); a published figure is comparable only when measured on the same split
    eval_split: str = "test"
    # images of that split when fixed (one image = 100 / N % of top-1); None where the index decides (ImageNet)
    test_images: int | None = None

    @property
    def fixed_classes(self) -> bool:
        """Whether every run of it has ``num_classes`` classes (ImageNet's come from its index: a subset has
        fewer)."""
        return self.in_memory


_CIFAR_MEAN, _CIFAR_STD = (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)
_IMAGENET_MEAN, _IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
DATASETS = {
    # scikit-learn's 8x8 handwritten digits (1797 images, shipped inside the package), upsampled to 16x16 RGB:
    # small enough that the default run trains every stage on 2 CPU cores in minutes
    "digits": DatasetInfo("digits", 10, 16, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), 2, False, (),
                          test_images=360),  # a fixed, seeded held-out part of the 1797 (pfs.data.datasets)
    "cifar10": DatasetInfo("cifar10", 10, 32, _CIFAR_MEAN, _CIFAR_STD, 4, True, ("cifar-10-batches-py",),
                           downloadable=True, test_images=10_000),
    "cifar100": DatasetInfo("cifar100", 100, 32, (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762), 4, True,
                            ("cifar-100-python",), downloadable=True, test_images=10_000),
    # read through its index tables (pfs.data.index.prepare_lists); the number of classes of a run comes from the
    # index (pfs.data.index.num_classes), 1000 for ILSVRC2012
    "imagenet": DatasetInfo("imagenet", 1000, 224, _IMAGENET_MEAN, _IMAGENET_STD, 0, True, ("train", "val"),
                            domain="imagenet", in_memory=False, color_augment=True, eval_split="val"),
    # the user's own images (pfs.data.folder): root/train/<class>/<image> and root/val/ (or dataset.val_fraction of
    # train/ held out), read through index tables like ImageNet; its classes come from the tree, and its image size,
    # mean and std from the config or the training images: prepare_folder_list records them in its stats.yaml,
    # which dataset_info("folder") then reads (use_folder_stats); these values stand in until then
    "folder": DatasetInfo("folder", 0, 64, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), 0, True, ("train",), domain="any",
                          in_memory=False, eval_split="val"),
}

TEST_IMAGES = {name: info.test_images for name, info in DATASETS.items() if info.test_images}


@dataclass(frozen=True)
class ArchInfo:
    name: str
    domain: str  # "cifar" or "imagenet": the datasets it fits (DatasetInfo.domain)
    backbone_multiplier: bool = False  # its builder takes ``multiplier`` (scales the widths that are not pruned)
    min_crop_scale: float = 0.08  # ImageNet training: smallest RandomResizedCrop area (official: 0.25 MobileNets)


ARCHS = {
    **{f"resnet{d}": ArchInfo(f"resnet{d}", "cifar") for d in (20, 32, 44, 56, 110)},
    **{f"vgg{d}_bn": ArchInfo(f"vgg{d}_bn", "cifar") for d in (11, 13, 16, 19)},
    "mobilenet_v1": ArchInfo("mobilenet_v1", "imagenet", min_crop_scale=0.25),
    "mobilenet_v2": ArchInfo("mobilenet_v2", "imagenet", backbone_multiplier=True, min_crop_scale=0.25),
    "resnet50": ArchInfo("resnet50", "imagenet", backbone_multiplier=True),
}


FOLDER = "folder"
DEFAULT_IMAGE_SIZE = DATASETS[FOLDER].image_size  # dataset.image_size's default (the schema says the same)
FOLDER_STATS_ENV = "PFS_FOLDER_STATS"  # the stats.yaml a folder dataset's facts are read from (use_folder_stats)
FOLDER_STATS_KIND = "pfs.folder_stats"


def closest(word: str, known) -> str | None:
    """The name of ``known`` closest to ``word`` (difflib's, ties to the longest common prefix: resnet21 gives
    resnet20, not resnet32), or None when none is close."""
    word, found = str(word), difflib.get_close_matches(str(word), [str(k) for k in known], n=5, cutoff=0.6)
    score = {k: difflib.SequenceMatcher(None, word, k).ratio() for k in found}
    return max(found, key=lambda k: (score[k], len(os.path.commonprefix([word, k]))), default=None)


def did_you_mean(name: str, known) -> str:
    """" (did you mean 'resnet20'?)" for the known name closest to ``name``, or ""."""
    found = closest(name, known)
    return f" (did you mean {found!r}?)" if found else ""


def dataset_info(name: str) -> DatasetInfo:
    """A dataset's facts; a folder dataset's as its stats.yaml records them, once use_folder_stats named it."""
    if name not in DATASETS:
        raise CatalogError(f"unknown dataset {name!r}{did_you_mean(name, DATASETS)}; known: {', '.join(DATASETS)}")
    return _configured_folder() if name == FOLDER else DATASETS[name]


def folder_info(image_size: int, mean, std, num_classes: int = 0) -> DatasetInfo:
    """The folder dataset's facts at ``image_size`` (MACs are counted there) with that mean and std (per RGB
    channel, of pixels in [0, 1])."""
    return dataclasses.replace(DATASETS[FOLDER], num_classes=int(num_classes), image_size=int(image_size),
                               mean=tuple(float(m) for m in mean), std=tuple(float(s) for s in std))


def use_folder_stats(path: str | os.PathLike) -> None:
    """From now on, dataset_info("folder") in this process and in the processes it starts (torchrun's ranks) gives
    the facts that ``path`` (prepare_folder_list's stats.yaml) records. The workflow names it while the DAG is built
    (rules/paths.smk), before that job made it; a job that reads the index tables names it too."""
    os.environ[FOLDER_STATS_ENV] = str(Path(path).resolve())


def _configured_folder() -> DatasetInfo:
    path = os.environ.get(FOLDER_STATS_ENV)
    try:
        stat = os.stat(path) if path else None
    except FileNotFoundError:  # not made yet: while the DAG is built, nothing asks for the size, mean or std
        stat = None
    return _folder_from_file(path, stat.st_mtime_ns, stat.st_size) if stat else DATASETS[FOLDER]


@functools.lru_cache(maxsize=4)
def _folder_from_file(path: str, _mtime_ns: int, _size: int) -> DatasetInfo:  # read again when the file changes
    from pfs.core.io import load_yaml_artifact  # noqa: PLC0415 - yaml only where a folder dataset is read

    doc = load_yaml_artifact(path, FOLDER_STATS_KIND, remedy="delete it and rerun prepare_folder_list")
    try:
        return folder_info(doc["image_size"], doc["mean"], doc["std"], doc["num_classes"])
    except (KeyError, TypeError, ValueError) as exc:
        raise CatalogError(f"{path} lacks a valid {exc} (image_size, mean, std, num_classes); delete it and rerun "
                           "prepare_folder_list") from None


LIBRARIES = ("torchvision", "timm")  # ``<library>:<model>`` names a library's network (pfs.models.library)
ALL_GROUPS = "+all"  # ``<library>:<model>+all`` also prunes residual streams and the stem/classifier interfaces


def is_library_arch(name: str) -> bool:
    return isinstance(name, str) and name.partition(":")[0] in LIBRARIES and ":" in name


def library_parts(name: str) -> tuple[str, str, bool]:
    """(library, model, all_groups) of ``<library>:<model>[+all]``; refuses a malformed name in one line."""
    library, _, model = name.partition(":")
    all_groups = model.endswith(ALL_GROUPS)
    model = model.removesuffix(ALL_GROUPS)
    if library not in LIBRARIES or not model or not all(c.isalnum() or c in "_.-" for c in model):
        raise CatalogError(f"malformed arch {name!r}: write torchvision:<model> or timm:<model> (optionally with "
                           f"{ALL_GROUPS} to prune residual streams and interfaces too), e.g. torchvision:resnet18; "
                           "python -m pfs list-models lists the valid names")
    return library, model, all_groups


def arch_info(name: str) -> ArchInfo:
    """An arch's facts; a library network (``torchvision:<model>``, ``timm:<model>``) fits any dataset (its
    existence is checked where the library is imported, pfs.models.library)."""
    if is_library_arch(name):
        library_parts(name)
        return ArchInfo(name, "any")
    if name not in ARCHS:
        raise CatalogError(f"unknown arch {name!r}{did_you_mean(name, ARCHS)}; known: {', '.join(sorted(ARCHS))}, "
                           "or torchvision:<model> / "
                           "timm:<model> (python -m pfs list-models lists them)")
    return ARCHS[name]


def arch_names(domain: str | None = None) -> list[str]:
    """The archs (of ``domain``, if given), sorted."""
    return sorted(n for n, a in ARCHS.items() if domain is None or a.domain == domain)


def multiplier_archs() -> list[str]:
    return sorted(n for n, a in ARCHS.items() if a.backbone_multiplier)


def check_arch_fits(arch: str, dataset: str) -> None:
    """Refuse an arch built for another input kind than the dataset's (a CIFAR ResNet on ImageNet, ...)."""
    domain = dataset_info(dataset).domain
    if "any" not in (arch_info(arch).domain, domain) and arch_info(arch).domain != domain:
        raise CatalogError(f"{arch} is {DOMAIN_NAMES[arch_info(arch).domain]} network; dataset {dataset} needs "
                           f"{DOMAIN_NAMES[domain]} arch: one of {', '.join(arch_names(domain))}")


def check_multiplier(arch: str, multiplier: float) -> None:
    """Refuse a backbone multiplier other than 1 for an arch whose every width is pruned."""
    if float(multiplier) != 1.0 and not arch_info(arch).backbone_multiplier:
        raise CatalogError(f"{arch} has no backbone multiplier (every width it has is set by expansion/widths), so "
                           f"only 1 is valid, got {multiplier}; archs that take one: {', '.join(multiplier_archs())}")


def check_color_augment(dataset: str) -> None:
    if not dataset_info(dataset).color_augment:
        raise CatalogError(f"dataset {dataset} has no colour augmentation (train.color_augment is the official "
                           "ImageNet colour jitter and lighting noise): set train.color_augment: false")


def check_data_present(dataset: str, root: str | Path, download: bool = False) -> None:
    """Refuse, before any work, a dataset whose folders are missing under ``root`` (and that cannot be
    downloaded there)."""
    info = dataset_info(dataset)
    if info.downloadable and download:
        return
    missing = [f"{f}/" for f in info.folders if not (Path(root) / f).is_dir()]
    if not missing:
        return
    if dataset == FOLDER:
        where = f"{root} does not exist" if not Path(root).is_dir() else f"{root} has no train/ folder"
        raise CatalogError(f"dataset folder not found: {where}. Set dataset.root to the folder holding "
                           "train/<class>/<image> (one sub-folder per class, images of any format PIL reads) and "
                           "val/<class>/<image> with the same class folders, or train/ alone with "
                           "dataset.val_fraction > 0")
    if info.in_memory:
        raise CatalogError(f"dataset {dataset} not found: {Path(root) / info.folders[0]} does not exist. Set "
                           f"dataset.root to the folder holding {info.folders[0]}/ (torchvision's layout)"
                           + (" or set dataset.download: true" if info.downloadable else ""))
    raise CatalogError(f"dataset {dataset} not found: {root} lacks {' and '.join(missing)}. Set dataset.root to the "
                       f"folder holding {' and '.join(f'{f}/' for f in info.folders)} (one sub-folder per class in "
                       "each)")

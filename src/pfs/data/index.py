"""Index a folder tree of class folders (``root/{train,val}/<class>/<image>``, ImageNet's layout) into tables, once,
so loaders never walk the file system again; and find the images in them that do not decode.

A table has one row per image: ``path`` (relative to the dataset root, e.g. ``train/n01440764/x.JPEG``),
``class_name`` (the class folder) and ``label`` (the class's position in the sorted class-folder list). Rows are
sorted by (label, path), so a table, and any split drawn from it, is the same on every file system (the official
lists keep os.listdir order). Indexing never decodes or stats an image: one os.scandir per folder, whose entries
carry the file type on Linux file systems. pfs.data.imagenet and pfs.data.folder read the images the tables list.
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path

import numpy as np
import pandas as pd

from pfs.core.errors import PfsError
from pfs.core.io import atomic_path
from pfs.data.datatree import IMAGE_EXTENSIONS, SPLITS, class_differences, class_folders, image_names

log = logging.getLogger(__name__)

COLUMNS = ("path", "class_name", "label")
_SHOWN = 5  # unreadable images named in an error message
LIST_RULES = {"imagenet": ("ImageNet", "prepare_imagenet_list"), "folder": ("folder", "prepare_folder_list")}


def _require_classes(split_dir: Path) -> list[str]:
    classes = class_folders(split_dir)
    if not classes:
        raise PfsError(f"{split_dir} has no class folders; expected one sub-folder per class (e.g. n01440764/). "
                       "The ILSVRC2012 val archive unpacks flat: move its images into class folders first")
    return classes


def index_split(split_dir: str | os.PathLike) -> pd.DataFrame:
    """One row per image of ``split_dir`` (columns path, class_name, label), sorted by (label, path).

    Paths are relative to the dataset root (the parent of ``split_dir``). Refuses a split without class folders
    and a class folder without images, since either would shift or lose labels.
    """
    split_dir = Path(split_dir)
    classes = _require_classes(split_dir)
    paths: list[str] = []
    class_names: list[str] = []
    labels: list[int] = []
    for label, name in enumerate(classes):
        images = image_names(os.path.join(split_dir, name))
        if not images:
            raise PfsError(f"class folder {split_dir / name} holds no images (extensions: "
                           f"{' '.join(sorted(IMAGE_EXTENSIONS))}); remove it or fill it")
        prefix = f"{split_dir.name}/{name}/"
        paths += [prefix + image for image in images]  # one class shares the prefix: name order == path order
        class_names += [name] * len(images)
        labels += [label] * len(images)
    return pd.DataFrame({"path": paths, "class_name": class_names, "label": np.asarray(labels, dtype=np.int64)})


def index_tree(root: str | os.PathLike, splits: tuple[str, ...] = SPLITS,
               label: str = "ImageNet") -> dict[str, pd.DataFrame]:
    """Index ``root/<split>`` for each of ``splits`` (train and val); refuses a tree whose splits are missing or
    disagree on the classes. ``label`` names the tree in the messages."""
    root = Path(root)
    missing = [f"{split}/" for split in splits if not (root / split).is_dir()]
    if missing:
        raise PfsError(f"{label} root {root} lacks {' and '.join(missing)}; set dataset.root to the folder that "
                       f"holds {' and '.join(f'{s}/' for s in splits)} (one sub-folder per class in each)")
    classes = {split: _require_classes(root / split) for split in splits}  # compared before any image is listed
    if "val" in classes and classes["train"] != classes["val"]:
        raise PfsError(f"{label} root {root}: val/ has other classes than train/ ({len(classes['val'])} vs "
                       f"{len(classes['train'])}; {class_differences(classes['train'], classes['val'])}), so labels "
                       "would not match")
    return {split: index_split(root / split) for split in splits}


def write_tables(frames: dict[str, pd.DataFrame], out_dir: str | os.PathLike, extra=None) -> dict[str, Path]:
    """Write each frame to ``out_dir/<split>.csv`` (and ``extra``: (path, write(tmp_path)), a file written with
    them), all to temp files first, renamed only when every one is complete."""
    outputs = {split: Path(out_dir) / f"{split}.csv" for split in frames}
    with contextlib.ExitStack() as stack:
        for split, frame in frames.items():
            frame.to_csv(stack.enter_context(atomic_path(outputs[split])), index=False)
        if extra is not None:
            path, write = extra
            write(stack.enter_context(atomic_path(path)))
    for split, frame in frames.items():
        log.info("%s: %d images in %d classes -> %s", split, len(frame), frame["label"].nunique(), outputs[split])
    return outputs


def prepare_lists(root: str | os.PathLike, out_dir: str | os.PathLike, verify_workers: int = 0) -> dict[str, Path]:
    """Write ``out_dir/train.csv`` and ``out_dir/val.csv``; all checks run before anything is written.

    Both tables are written to temp files first and renamed only when both are complete. ``verify_workers`` > 0:
    first decode every image with that many processes and refuse undecodable ones (verify_images).
    """
    frames = index_tree(root)
    if verify_workers > 0:
        verify_images(root, frames, verify_workers)
    return write_tables(frames, out_dir)


def read_list(path: str | os.PathLike, dataset: str = "imagenet") -> pd.DataFrame:
    """Load an index table written by list preparation of ``dataset`` (prepare_lists; pfs.data.folder's) and check
    it (columns, labels 0..K-1, one label per class)."""
    path = Path(path)
    label, rule = LIST_RULES[dataset]
    what, remedy = f"{label} list {path}", f"rerun {rule} (delete the file first)"
    if not path.is_file():
        raise PfsError(f"{what} does not exist; {remedy}")
    try:
        frame = pd.read_csv(path, dtype={"path": str, "class_name": str, "label": "int64"}, keep_default_na=False)
    except (ValueError, pd.errors.ParserError) as exc:
        raise PfsError(f"{what} is not a valid index table ({exc}); {remedy}") from exc
    if list(frame.columns) != list(COLUMNS):
        raise PfsError(f"{what} has columns {list(frame.columns)}, expected {list(COLUMNS)}; {remedy}")
    if frame.empty:
        raise PfsError(f"{what} has no rows; {remedy}")
    pairs = frame[["label", "class_name"]].drop_duplicates()
    labels = sorted(pairs["label"])
    if labels != list(range(len(labels))) or pairs["class_name"].nunique() != len(pairs):
        raise PfsError(f"{what}: labels are not 0..K-1 with one class name each; {remedy}")
    return frame


def num_classes(frame: pd.DataFrame) -> int:
    """Number of classes of an index table (labels are 0..K-1)."""
    return int(frame["label"].max()) + 1


def decode_image(path: Path, draft: int | None = None):
    """The image at ``path`` as RGB (greyscale and CMYK JPEGs exist in ImageNet); ``draft``: let a JPEG decode at
    a reduced scale of at least that many pixels a side (all its data is still read: truncation is still seen)."""
    from PIL import Image

    with Image.open(path) as image:
        if draft:
            image.draft("RGB", (draft, draft))
        return image.convert("RGB")


def unreadable_error(root: Path, path: Path, exc: OSError) -> PfsError:
    """The one-line error for an image that cannot be read: missing (the tree changed under the index, or another
    dataset.root) or undecodable (a corrupt or foreign file: remove or replace it).

    The remedy says what each fix does to the index: the tree's fingerprint (pfs.data.datatree) covers class folders
    and image names, not contents, so a good copy under the same name leaves the index as it is (it lists names, and
    the job reads the new file), while a removal changes the fingerprint and the next run re-indexes the tree and
    reruns every job downstream of the index."""
    if isinstance(exc, FileNotFoundError):
        return PfsError(f"image {path} is listed in the index but missing: check dataset.root (a changed tree is "
                        "re-indexed by the next run)")
    return PfsError(f"cannot decode image {path} ({exc}): remove or replace the file, then run again (a good copy "
                    "under the same name is read as it is: the index lists names only and stands; a removal "
                    "re-indexes the tree and reruns every job that read the index); to find every such file before "
                    f"training, set dataset.verify_images: true or run `python -m pfs verify-images --root {root}`")


def _check_one(path: str) -> str | None:
    try:
        decode_image(Path(path), draft=64)
    except (OSError, ValueError) as exc:  # PIL: OSError for truncated or unidentified data, ValueError rarely
        return f"{type(exc).__name__}: {exc}"
    return None


def unreadable_images(root: str | os.PathLike, paths: list[str], workers: int = 1) -> list[tuple[str, str]]:
    """(path, reason) of every image of ``paths`` (relative to ``root``) that cannot be decoded, decoding each in
    one of ``workers`` processes (a JPEG at a reduced scale: every byte is read, the inverse DCT is cheaper)."""
    full = [os.path.join(root, p) for p in paths]
    if workers <= 1:
        reasons = map(_check_one, full)
    else:
        from concurrent.futures import ProcessPoolExecutor

        pool = ProcessPoolExecutor(workers)
        reasons = pool.map(_check_one, full, chunksize=max(1, min(256, len(full) // (workers * 8) or 1)))
    try:
        return [(p, r) for p, r in zip(paths, reasons, strict=True) if r is not None]
    finally:
        if workers > 1:
            pool.shutdown()


def verify_images(root: str | os.PathLike, frames: dict[str, pd.DataFrame], workers: int = 1) -> None:
    """Decode every image the index tables list; refuse with one line naming the bad files (all of them in the
    log) and the fix."""
    import time

    paths = [p for frame in frames.values() for p in frame["path"]]
    start = time.perf_counter()
    bad = unreadable_images(root, paths, workers)
    seconds = time.perf_counter() - start
    log.info("verified %d images in %.1f s (%.0f files/s, %d decoding processes): %d unreadable", len(paths), seconds,
             len(paths) / max(seconds, 1e-9), workers, len(bad))
    for path, reason in bad:
        log.info("unreadable: %s (%s)", Path(root) / path, reason)
    if bad:
        shown = ", ".join(str(Path(root) / p) for p, _ in bad[:_SHOWN])
        more = f" (+{len(bad) - _SHOWN} more, all listed in the log)" if len(bad) > _SHOWN else ""
        raise PfsError(f"{len(bad)} of {len(paths)} images cannot be decoded: {shown}{more}; remove or replace "
                       "them and run again")


# AlexNet-style PCA lighting noise (Krizhevsky et al. 2012): the principal components of ImageNet's RGB pixels in
# [0, 1] (fb.resnet.torch's values, copied by the official code's datasets.Lighting)

"""Atomic writes, safe loads, and versioned artifact formats."""

from __future__ import annotations

import contextlib
import hashlib
import io as io_module
import json
import os
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from pfs.core.errors import PfsError

FORMAT_VERSION = 1
REMEDY = "delete it and rerun the stage that makes it"  # for a file that is there but bad
MISSING = "check the path, or run the stage that makes it"  # for a file that is not there: nothing to delete


def _file_mode() -> int:
    """0666 less the process umask: the mode open() would give a new file."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


_FILE_MODE = _file_mode()


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temp path in the target's folder; on success rename it over ``path`` (never a half-written file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, _FILE_MODE)  # mkstemp makes 0600: results must be readable like any file the user writes
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_yaml(path: str | os.PathLike, data: dict) -> None:
    atomic_write_text(path, yaml.safe_dump(data, sort_keys=False))


def write_json(path: str | os.PathLike, data: dict) -> None:
    atomic_write_text(path, json.dumps(data, indent=2) + "\n")


def write_json_artifact(path: str | os.PathLike, kind: str, data: dict) -> None:
    """A JSON file tagged with its kind and format version (read back by load_json_artifact), atomically."""
    write_json(path, {"kind": kind, "format_version": FORMAT_VERSION, **data})


def require_file(path: Path, missing: str = MISSING) -> None:
    """Refuse a path that names no file, with ``missing`` as the advice: a bad file's remedy ("delete it and
    rerun ...") would tell the user to delete what is not there."""
    if path.is_dir():
        raise PfsError(f"{path} is a folder, not a file; {missing}")
    if not path.is_file():
        raise PfsError(f"{path} does not exist; {missing}")


def load_json_artifact(path: str | os.PathLike, kind: str, remedy: str = REMEDY, missing: str = MISSING) -> dict:
    path = Path(path)
    require_file(path, missing)
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise PfsError(f"{path} is not valid JSON ({exc}); {remedy}") from exc
    _check_header(path, data, kind, remedy)
    return data


def write_csv(path: str | os.PathLike, frame) -> None:
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)


def save_artifact(path: str | os.PathLike, kind: str, payload: dict[str, Any]) -> None:
    """torch.save ``payload`` tagged with its kind and format version, atomically.

    Saved through memory: torch.save names the zip's root folder after the file, and the temp file's random name
    would make equal contents differ byte for byte (and in their sha256, which channels.yaml records)."""
    import torch  # here, not at the top: the summarize job reads JSON and YAML only, and starts ~1.5 s faster

    buffer = io_module.BytesIO()
    torch.save({"kind": kind, "format_version": FORMAT_VERSION, **payload}, buffer)
    with atomic_path(path) as tmp:
        tmp.write_bytes(buffer.getbuffer())


def _check_header(path: Path, data: Any, kind: str, remedy: str) -> None:
    if not isinstance(data, dict) or data.get("kind") != kind:
        found = data.get("kind") if isinstance(data, dict) else type(data).__name__
        raise PfsError(f"{path} is not a {kind} file (found {found!r}); {remedy}")
    if data.get("format_version") != FORMAT_VERSION:
        raise PfsError(
            f"{path} has format_version {data.get('format_version')!r}, this pfs reads {FORMAT_VERSION}; {remedy}"
        )


def check_intact(path: Path, remedy: str = REMEDY) -> None:
    """Refuse a torch file whose bytes are not the ones written.

    torch.load does not check the CRC32 the zip records for each entry, so a model.pt with flipped bytes in its
    weights loads, silently, as another network. zipfile's testzip reads every entry and checks its CRC32: 43 ms
    for a 106 MB model.pt from the page cache (torch.load of it: 49 ms; its sha256: 95 ms)."""
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except PermissionError as exc:
        raise PfsError(f"{path} cannot be read ({exc.strerror}); check its permissions") from None
    except Exception as exc:  # truncated (no zip directory), damaged headers, or not a torch file at all
        raise PfsError(f"{path} is corrupt or not a torch file ({type(exc).__name__}: {exc}); {remedy}") from None
    if bad is not None:
        raise PfsError(f"{path} is corrupt: its entry {bad} fails its CRC32 check (the file changed after it was "
                       f"written); {remedy}")


def load_artifact(path: str | os.PathLike, kind: str, remedy: str = REMEDY, missing: str = MISSING) -> dict:
    """Load a torch artifact safely (``weights_only=True``) once its bytes are checked (check_intact), and check
    its kind and format version; ``remedy`` is the advice for a bad file, ``missing`` for an absent one."""
    path = Path(path)
    require_file(path, missing)
    check_intact(path, remedy)
    import torch

    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a zip that is not a torch file, or one that pickles code
        raise PfsError(f"{path} is corrupt or not a torch file ({type(exc).__name__}: {exc}); {remedy}") from exc
    _check_header(path, data, kind, remedy)
    return data


def load_yaml_artifact(path: str | os.PathLike, kind: str, remedy: str = REMEDY, missing: str = MISSING) -> dict:
    path = Path(path)
    require_file(path, missing)
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:  # its text spans several lines: keep the error to one
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        reason = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise PfsError(f"{path} is not valid YAML ({where}{reason}); {remedy}") from exc
    _check_header(path, data, kind, remedy)
    return data


class IdentityMismatch(PfsError):
    """A file made for another identity (``key``: ``found``) than the caller's (``expected``). The message ends
    with the workflow's remedy (the file is stale: remake it); a caller whose mismatch comes from what a user
    asked for (a command-line flag) catches it and names the flag instead, from the facts kept here."""

    def __init__(self, path: str | os.PathLike, key: str, found: Any, expected: Any, remedy: str = REMEDY) -> None:
        self.path, self.key, self.found, self.expected, self.remedy = str(path), key, found, expected, remedy
        super().__init__(f"{path} was made for {key}={found!r}, but this job needs {key}={expected!r}; {remedy}")

    def __reduce__(self):  # picklable with its facts (e.g. out of a DataLoader worker)
        return type(self), (self.path, self.key, self.found, self.expected, self.remedy)


def check_field(path: str | os.PathLike, data: dict, key: str, expected: Any, remedy: str = REMEDY) -> None:
    """Refuse a file whose ``key`` differs from what the caller expects (e.g. another arch or expansion), with an
    IdentityMismatch naming both values."""
    if data.get(key) != expected:
        raise IdentityMismatch(path, key, data.get(key), expected, remedy)


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def stable_hash(obj: Any) -> str:
    """A short hash of a JSON-serialisable object (used to key resume checkpoints by a job's settings)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


"""Atomic writes, safe loads, and versioned artifact formats."""

from __future__ import annotations

import contextlib
import hashlib
import io as io_module
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from pfs.errors import PfsError

FORMAT_VERSION = 1
REMEDY = "delete it and rerun the stage that makes it"


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


def load_json_artifact(path: str | os.PathLike, kind: str, remedy: str = REMEDY) -> dict:
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise PfsError(f"{path} does not exist; {remedy}") from None
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



def load_artifact(path: str | os.PathLike, kind: str, remedy: str = REMEDY) -> dict:
    """Load a torch artifact safely (``weights_only=True``) and check its kind and format version."""
    path = Path(path)
    if not path.is_file():
        raise PfsError(f"{path} does not exist; {remedy}")
    import torch

    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated, corrupt, or not a torch file at all
        raise PfsError(f"{path} is corrupt or not a torch file ({type(exc).__name__}: {exc}); {remedy}") from exc
    _check_header(path, data, kind, remedy)
    return data


def load_yaml_artifact(path: str | os.PathLike, kind: str, remedy: str = REMEDY) -> dict:
    path = Path(path)
    if not path.is_file():
        raise PfsError(f"{path} does not exist; {remedy}")
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


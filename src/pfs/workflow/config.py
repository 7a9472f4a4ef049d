"""The config's checks before the DAG is built: schema errors in one line, cross-field checks, the output folders,
and each arch's train settings.

Imported by rules/config.smk while the DAG is built, so it must stay light (no torch import).
"""

from __future__ import annotations

import os
from pathlib import Path

from pfs.core import catalog
from pfs.core.grid import multipliers
from pfs.workflow.ratios import ratio_problem


class ConfigError(ValueError):
    """A config value that is valid on its own but not together with the others."""


def _best_error(validator, instance, prefix: str = "") -> str | None:
    import jsonschema

    error = jsonschema.exceptions.best_match(validator.iter_errors(instance))
    if error is None:
        return None
    where = ".".join([prefix, *(str(p) for p in error.absolute_path)]).strip(".") or "(top level)"
    return f"config {where}: {error.message}{_did_you_mean(error)}"


def _did_you_mean(error) -> str:
    """"; did you mean 'epochs'?" for an unknown key or a misspelt name (of an enum, an arch), else ""."""
    schema, value = error.schema, error.instance
    if error.validator == "additionalProperties" and isinstance(value, dict):
        known = schema.get("properties", {})
        unknown = [k for k in value if k not in known]
        guesses = [(k, g) for k in unknown if (g := catalog.closest(str(k), known))]
        if len(unknown) == 1:
            return "".join(f"; did you mean {g!r}?" for _, g in guesses)
        return "".join(f"; did you mean {g!r} for {k!r}?" for k, g in guesses)
    if not isinstance(value, str):
        return ""
    names = list(schema.get("enum", []))
    for branch in schema.get("anyOf", []) + schema.get("oneOf", []):
        names += branch.get("enum", [])
    library, sep, model = value.partition(":")
    if sep and library not in catalog.LIBRARIES and (close := catalog.closest(library, catalog.LIBRARIES)):
        return f"; did you mean {close + sep + model!r}?"  # torchvison:resnet18
    guess = catalog.closest(value, names) if names else None
    return f"; did you mean {guess!r}?" if guess else ""


_SCALARS = {"integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
            "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
            "boolean": lambda v: isinstance(v, bool), "null": lambda v: v is None,
            "array": lambda v: isinstance(v, list), "object": lambda v: isinstance(v, dict),
            "string": lambda v: isinstance(v, str)}


def _types(schema: dict) -> list[str]:
    """The JSON types ``schema`` allows (its own ``type`` and those of its anyOf/oneOf branches)."""
    own = schema.get("type", [])
    types = [own] if isinstance(own, str) else list(own)
    for branch in schema.get("anyOf", []) + schema.get("oneOf", []):
        types += [t for t in _types(branch) if t not in types]
    return types


def _parse(text: str, types: list[str]):
    """``text`` read by YAML (a number also as Python reads it: 1e-4) when that gives one of ``types``; else
    ``text`` itself, so the schema's error still names the string given."""
    import yaml

    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        value = text
    if isinstance(value, str) and "number" in types:
        try:
            value = float(text)
        except ValueError:
            pass
    return value if any(_SCALARS[name](value) for name in types if name in _SCALARS) else text


def _coerce(value, schema: dict):
    if isinstance(value, str) and (wanted := [t for t in _types(schema) if t != "string"]):
        value = _parse(value, wanted)  # mem_mb (an integer or 'auto'): '8000' becomes 8000, 'auto' stays
    if isinstance(value, dict):
        props, extra = schema.get("properties", {}), schema.get("additionalProperties")
        for key, item in value.items():
            sub = props.get(key, extra if isinstance(extra, dict) else None)
            if sub:
                value[key] = _coerce(item, sub)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        value[:] = [_coerce(item, schema["items"]) for item in value]
    return value


def coerce_overrides(config: dict, schema: dict | str | Path) -> dict:
    """Give command-line values the types the schema asks for, in place, before the schema check.

    Snakemake reads ``--config train='{epochs: 6}'`` with YAML's base loader, so every value nested in it is a
    string ('6'). Each string where the schema expects an integer, number, boolean, array, object or null is read
    with yaml.safe_load (a number also as Python reads it, so 1e-4 is 0.0001); a string that does not read as
    one of those types is kept, and the schema check then names it. ``train_by_arch`` entries take train's types.
    """
    import yaml

    if not isinstance(schema, dict):
        schema = yaml.safe_load(Path(schema).read_text())
    _coerce(config, schema)
    train = schema.get("properties", {}).get("train", {})
    for entry in (config.get("train_by_arch") or {}).values():
        if isinstance(entry, dict):
            _coerce(entry, train)
    return config


def check_schema(config: dict, schema_path: str | Path) -> None:
    """Validate ``config`` against the JSON schema; raise ConfigError with ONE line naming the bad key.

    Each ``train_by_arch`` entry is checked with the ``train`` section's schema (its keys replace train's).
    """
    import jsonschema
    import yaml

    schema = yaml.safe_load(Path(schema_path).read_text())
    suffix = f"; fix it in the config file or --config (keys and allowed values: {schema_path})"
    message = _best_error(jsonschema.Draft202012Validator(schema), config)
    if message is None:
        train_schema = {**schema["properties"]["train"], "$schema": schema["$schema"]}
        for arch, override in (config.get("train_by_arch") or {}).items():
            if arch not in config["grid"]["archs"]:
                continue  # not run: an entry kept for later is not an error
            message = _best_error(jsonschema.Draft202012Validator(train_schema), override, f"train_by_arch.{arch}")
            if message:
                break
    if message:
        raise ConfigError(message + suffix)


def train_settings(config: dict, arch: str) -> dict:
    """The train section for ``arch`` (train_by_arch's entry over train), keys sorted: Snakemake compares params
    by repr(), so a mere reordering of keys must not rerun anything."""
    return dict(sorted({**config["train"], **(config.get("train_by_arch") or {}).get(arch, {})}.items()))


def finetune_settings(config: dict, arch: str) -> dict:
    """The settings of a fine-tuning job for ``arch`` (the classic baselines', l1 and slim): its train settings
    (train_settings) with the finetune section's keys laid over them (epochs, batch size, lr and schedule), keys
    sorted."""
    return dict(sorted({**train_settings(config, arch), **config["finetune"]}.items()))


def sparse_settings(config: dict, arch: str) -> dict:
    """The settings of network slimming's sparsity training for ``arch``: its train settings (the Scratch-E recipe
    of train_full) plus bn_sparsity = slimming.s, keys sorted. Only this job gets the key, so the params of every
    other training job stay as they were."""
    return dict(sorted({**train_settings(config, arch), "bn_sparsity": config["slimming"]["s"]}.items()))


def check_config(config: dict) -> None:
    """Cross-field checks the JSON schema cannot express; raise ConfigError naming the key and the fix."""
    data, grid = config["dataset"], config["grid"]
    for arch in grid["archs"]:
        if arch not in grid["expansions"]:
            raise ConfigError(f"grid.expansions has no entry for arch {arch!r}; add e.g. '{arch}: [..]' under it")
        _catalog_check("grid.archs", catalog.check_arch_fits, arch, data["name"])
        for m in multipliers(config, arch):
            _catalog_check(f"grid.multipliers.{arch}", catalog.check_multiplier, arch, m)
        if train_settings(config, arch).get("color_augment"):
            _catalog_check("train.color_augment", catalog.check_color_augment, data["name"])
    _check_folder_keys(data)
    if data["name"] != catalog.FOLDER:  # a folder's classes are counted in its tree first (rules/config.smk)
        check_ratios(config)
    if data.get("verify_images") and catalog.dataset_info(data["name"]).in_memory:
        raise ConfigError(f"dataset.verify_images: {data['name']} is not read from image files (its files are "
                          "checked when loaded); set dataset.verify_images: false")
    _catalog_check("dataset.root", catalog.check_data_present, data["name"], data["root"], data.get("download", False))
    if config.get("references"):  # a bad references file fails now, not after the last training job
        from pfs.core.errors import PfsError  # noqa: PLC0415 - torch-free, like pfs.results.references
        from pfs.results.references import load_references  # noqa: PLC0415

        try:
            load_references(config["references"])
        except PfsError as exc:
            raise ConfigError(f"config references: {exc}") from None
    if data["name"] == "digits" and data["val_size"] >= 1437:
        raise ConfigError(f"dataset.val_size={data['val_size']} leaves no digits to learn gates on; use < 1437")


def check_ratios(config: dict, num_classes: int | None = None) -> None:
    """Refuse, before any job, a grid ratio that the pruning of a paper arch cannot reach (pfs.workflow.ratios: the
    prune stage's own bounds); ``num_classes``: a folder dataset's, counted in its tree."""
    problem = ratio_problem(config, dataset_image_size(config), num_classes)
    if problem:
        raise ConfigError(problem)


# the dataset keys only a folder dataset takes, at their defaults (the schema's)
FOLDER_KEYS = {"image_size": catalog.DEFAULT_IMAGE_SIZE, "val_fraction": 0, "mean": None, "std": None}


def _check_folder_keys(data: dict) -> None:
    """Refuse a folder-only key set on another dataset, and a mean without a std (or the reverse)."""
    if data["name"] != catalog.FOLDER:
        given = [key for key, default in FOLDER_KEYS.items() if data.get(key, default) != default]
        if given:
            raise ConfigError(f"dataset.{given[0]}: only dataset.name: folder takes it ({data['name']} has its own "
                              "image size, mean, std and evaluation split); remove it from the config")
    elif (data.get("mean") is None) != (data.get("std") is None):
        raise ConfigError("dataset.mean and dataset.std go together: give both (3 numbers each, per RGB channel of "
                          "pixels in [0, 1]) or neither (both computed from the training images)")


def dataset_image_size(config: dict) -> int:
    """The image size the jobs of ``config`` see (and count MACs at): dataset.image_size for a folder dataset, the
    catalog's fixed size otherwise."""
    data = config["dataset"]
    if data["name"] == catalog.FOLDER:
        return int(data.get("image_size", catalog.DEFAULT_IMAGE_SIZE))
    return catalog.dataset_info(data["name"]).image_size


def _catalog_check(key: str, check, *args) -> None:
    """Run one of pfs.core.catalog's checks; its message, prefixed by the config key to change."""
    try:
        check(*args)
    except catalog.CatalogError as exc:
        raise ConfigError(f"{key}: {exc}") from None


def check_output_folders(folders: list[str]) -> None:
    """Refuse to start when a folder the jobs write under is a file or not writable (Snakemake would stop with
    a traceback while it prepares the first job)."""
    for folder in folders:
        path = Path(folder)
        if path.exists() and not path.is_dir():
            raise ConfigError(f"{folder} is a file, but the workflow writes its outputs under {folder}/: move or "
                              "rename that file")
        if path.is_dir() and not os.access(path, os.W_OK | os.X_OK):
            raise ConfigError(f"{folder}/ is not writable by this user: make it writable (chmod u+w {folder}) or "
                              "run the workflow in a folder of your own")

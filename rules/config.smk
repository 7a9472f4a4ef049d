# The config: validated and checked (one line per bad value; a folder dataset's tree too), wildcard constraints, the
# data and numerics fingerprints, the checks before a run, and the params the rules take from config sections. No
# rules here.

from snakemake.utils import validate

from pfs.workflow.config import ConfigError, check_config, check_output_folders, check_ratios, check_schema
from pfs.workflow.config import coerce_overrides, finetune_settings, sparse_settings, train_settings
from pfs.workflow.ratios import class_counts
from pfs.data.datatree import check_folder_tree, fingerprint
from pfs.core.errors import PfsError
from pfs.core.numerics import rule_params as numerics_params
from pfs.workflow.slurm_check import check_workflow as check_slurm_status
from pfs.core.grid import NUMBER
from pfs.core.catalog import is_library_arch

# a bad value stops the run with ONE line naming the key and the fix: a SystemExit passes through Snakemake, so
# Python prints its message alone and exits 1 (any other exception gets "ConfigError in file ..." and a traceback)
try:
    # values nested in --config (train='{epochs: 6}') arrive as strings: give them the schema's types first
    coerce_overrides(config, f"{workflow.basedir}/schemas/config.schema.yaml")
    check_schema(config, f"{workflow.basedir}/schemas/config.schema.yaml")  # one clear line naming a bad key
    validate(config, "../schemas/config.schema.yaml", set_default=True)  # fills in the defaults
    check_config(config)
    classes = None  # a folder's classes, counted in its tree; other datasets': the catalog's
    if config["dataset"]["name"] == "folder":  # its class folders (pfs.data.datatree): listed, no image opened
        classes = len(check_folder_tree(config["dataset"]["root"], config["dataset"]["val_fraction"]))
        check_ratios(config, classes)  # the grid's ratios at its image size and classes (pfs.workflow.ratios)
    if any(is_library_arch(a) for a in config["grid"]["archs"]):  # torchvision/timm: traced now (seconds), not in a job
        from pfs.models.checks import check_library_archs

        check_library_archs(config, class_counts(config["dataset"]["name"], classes))
except (ConfigError, PfsError) as exc:
    raise SystemExit(f"error: {exc}") from None
# the dataset's files as the jobs would see them (pfs.data.datatree): a param of every rule that reads them, so changed
# data reruns those jobs and what follows; moved data (another dataset.root) reruns nothing
DATA = fingerprint(config["dataset"]["name"], config["dataset"]["root"], config["dataset"]["check_md5"])
# how the jobs compute (pfs.core.numerics: native or pinned, and the pinned thread count): a param of every rule whose
# floats it changes, so switching it reruns gate learning and training, and nothing that only reads their files
NUMERICS = numerics_params(config)


onstart:
    # a real run only (a dry run of a read-only finished run is fine): one line before any job, no traceback (an
    # exception raised here gets Snakemake's "ConfigError in file ..., line ..." and the call stack; a SystemExit
    # passes through it, and the lock files are removed on the way out)
    try:
        check_output_folders(["results", "logs", "benchmarks", config["checkpoint_dir"]])
        # under --executor slurm, before the first job is submitted: refuse a job status command that cannot work
        # here (pfs.workflow.slurm_check: a sacct without accounting would make the run wait forever)
        check_slurm_status(workflow)
    except (ConfigError, PfsError) as exc:
        raise SystemExit(f"error: {exc}") from None


wildcard_constraints:
    dataset=r"[a-z0-9]+",
    arch=r"[a-z0-9_]+|(torchvision|timm):[A-Za-z0-9_.\-]+(\+all)?",
    expansion=r"\d+",
    multiplier=NUMBER,
    sparsity=NUMBER,
    ratio=NUMBER,
    seed=r"\d+",
    schedule=r"scratch_e|scratch_b",


IMAGENET = config["dataset"]["name"] == "imagenet"
FOLDER = config["dataset"]["name"] == "folder"


def section_params(name):
    """A config section as one param, keys sorted: Snakemake compares params by repr(), so without this a mere
    reordering of keys (another --configfile, a key moved or left to its default) would rerun the stage."""
    return dict(sorted(config[name].items()))


def train_params(wildcards):
    """The train section as the job's arch sees it (train_by_arch over train)."""
    return train_settings(config, wildcards.arch)


def finetune_params(wildcards):
    """The train settings of a fine-tuning job: the finetune section over the arch's train settings."""
    return finetune_settings(config, wildcards.arch)


def sparse_params(wildcards):
    """The train settings of slimming's sparsity training: the arch's train settings plus bn_sparsity (slimming.s)."""
    return sparse_settings(config, wildcards.arch)


def split_params():
    """Dataset settings that change results (the split); location settings are read by the scripts."""
    held_out = "val_per_class" if IMAGENET or FOLDER else "val_size"
    return {k: config["dataset"][k] for k in (held_out, "split_seed")}


def folder_list_params():
    """What a folder dataset's list preparation makes of its tree besides the fingerprint: the evaluation hold-out,
    the image size and the given mean and std (null: computed at that size). Changing one remakes the index and
    stats.yaml, so everything reruns."""
    return {k: config["dataset"][k] for k in ("image_size", "mean", "std", "val_fraction")}


def references_input():
    """The references file (config key references) as an input of summarize, so editing it resummarizes."""
    return {"references": config["references"]} if config.get("references") else {}

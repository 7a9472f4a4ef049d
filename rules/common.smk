# Config validation, the output folders checked before a run, wildcard constraints, path templates and target lists.
# No rules here.

from snakemake.utils import validate

from pfs.config import check_config, check_output_folders, check_schema, train_settings
from pfs.datatree import fingerprint
from pfs.grid import NUMBER, full_runs, pruned_runs, random_runs, uniform_runs

check_schema(config, f"{workflow.basedir}/schemas/config.schema.yaml")  # one clear line naming a bad key
validate(config, "../schemas/config.schema.yaml", set_default=True)  # fills in the defaults
check_config(config)
# the dataset's files as the jobs would see them (pfs.datatree): a param of every rule that reads them, so changed
# data reruns those jobs and what follows; moved data (another dataset.root) reruns nothing
DATA = fingerprint(config["dataset"]["name"], config["dataset"]["root"], config["dataset"]["check_md5"])


onstart:
    # a real run only (a dry run of a read-only finished run is fine): one line before any job, no traceback
    check_output_folders(["results", "logs", "benchmarks", config["checkpoint_dir"]])


wildcard_constraints:
    dataset=r"[a-z0-9]+",
    arch=r"[a-z0-9_]+",
    expansion=r"\d+",
    multiplier=NUMBER,
    sparsity=NUMBER,
    ratio=NUMBER,
    seed=r"\d+",
    schedule=r"scratch_e|scratch_b",


EXP = "{dataset}/{arch}/e{expansion}_m{multiplier}/s{sparsity}/seed{seed}"
PRUNED = f"{EXP}/p{{ratio}}"
FULL = "{dataset}/{arch}/full/seed{seed}/{schedule}"
UNIFORM = "{dataset}/{arch}/uniform/p{ratio}"  # uniform-width baseline: channels.yaml, then seed{seed}/{schedule}/
RANDOM = "{dataset}/{arch}/random/e{expansion}_m{multiplier}/seed{seed}"  # random-gates ablation: gates.pt
RANDOM_PRUNED = f"{RANDOM}/p{{ratio}}"  # channels.yaml, then {schedule}/
SUMMARY = "results/summary.csv"
TABLES = {"table_csv": "results/table.csv", "table_md": "results/table.md", "comparison_csv": "results/comparison.csv"}
PLOTS = {name: f"results/plots/{name}.png" for name in ("accuracy", "widths", "gate_histograms", "gate_learning")}
IMAGENET_LISTS = {split: f"results/imagenet/lists/{split}.csv" for split in ("train", "val")}
IMAGENET = config["dataset"]["name"] == "imagenet"
RUN_FILES = ("model.pt", "metrics.json", "history.csv")


def run_outputs(run_dir):
    """Named outputs of a training job under results/{run_dir}/."""
    return {name.split(".")[0]: f"results/{run_dir}/{name}" for name in RUN_FILES}


def gpu_resources(max_gpu=None):
    """Resources of the GPU jobs (at most ``max_gpu`` GPUs); each retry (resources.retries) gets a longer wall-time
    limit."""
    res = config["resources"]
    gpu = res["gpu"] if max_gpu is None else min(res["gpu"], max_gpu)
    return {"gpu": gpu, "mem_mb": res["mem_mb"], "runtime": lambda wildcards, attempt: res["runtime"] * attempt}


def index_inputs():
    """ImageNet jobs read the index tables of prepare_imagenet_list; other datasets need no input for their data."""
    return {"train_list": IMAGENET_LISTS["train"], "val_list": IMAGENET_LISTS["val"]} if IMAGENET else {}


def section_params(name):
    """A config section as one param, keys sorted: Snakemake compares params by repr(), so without this a mere
    reordering of keys (another --configfile, a key moved or left to its default) would rerun the stage."""
    return dict(sorted(config[name].items()))


def train_params(wildcards):
    """The train section as the job's arch sees it (train_by_arch over train)."""
    return train_settings(config, wildcards.arch)


def split_params():
    """Dataset settings that change results (the split); location settings are read by the scripts."""
    held_out = "val_per_class" if IMAGENET else "val_size"
    return {k: config["dataset"][k] for k in (held_out, "split_seed")}


def references_input():
    """The references file (config key references) as an input of summarize, so editing it resummarizes."""
    return {"references": config["references"]} if config.get("references") else {}


def run_kinds():
    """The grid's training runs kind by kind: kind -> (its runs, its channels.yaml template or None for the
    standard network, its training folder template under results/). One table for the training rules' paths,
    the summary's inputs, the plots' channels files and the paper targets."""
    return {
        "pfs": (pruned_runs(config), f"{PRUNED}/channels.yaml", f"{PRUNED}/{{schedule}}"),
        "full": (full_runs(config), None, FULL),
        "uniform": (uniform_runs(config), f"{UNIFORM}/channels.yaml", f"{UNIFORM}/seed{{seed}}/{{schedule}}"),
        "random": (random_runs(config), f"{RANDOM_PRUNED}/channels.yaml", f"{RANDOM_PRUNED}/{{schedule}}"),
    }


def run_files(name):
    """results/<training folder>/<name> of every training run of the grid (metrics.json, model.pt, ...)."""
    return [f"results/{folder}/{name}".format(**r) for runs, _, folder in run_kinds().values() for r in runs]


def all_metrics():
    return run_files("metrics.json")


def all_model_targets():
    return run_files("model.pt")


def experiment_files(name):
    """results/{EXP}/<name> of every gate-learning run of the grid, de-duplicated in order."""
    return list(dict.fromkeys(f"results/{EXP}/{name}".format(**r) for r in pruned_runs(config)))


def all_channels():
    """Every channels.yaml of the grid (gate-pruned, uniform, random gates), de-duplicated in order."""
    return list(
        dict.fromkeys(
            f"results/{channels}".format(**r) for runs, channels, _ in run_kinds().values() if channels for r in runs
        )
    )


def reported(path, caption, category):
    """An output shown in the Snakemake report with its caption (report/), under category / the dataset."""
    return report(
        path,
        caption=f"../report/{caption}",
        category=category,
        subcategory=config["dataset"]["name"],
    )


def paper_target(dataset, configfile):
    """Input function of the paper_* targets: the whole grid, but only under that paper's config."""

    def inputs(wildcards):
        if config["dataset"]["name"] != dataset:
            raise ValueError(
                f"target paper_{dataset} runs the grid of {configfile}, but the config has dataset "
                f"{config['dataset']['name']}: add --configfile {configfile} (after the targets)"
            )
        return [SUMMARY, *TABLES.values(), *PLOTS.values(), *all_model_targets()]

    return inputs

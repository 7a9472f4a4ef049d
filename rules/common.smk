# Config validation, the output folders checked before a run, wildcard constraints, path templates and target lists.
# No rules here.

from snakemake.utils import validate

from pfs.config import check_config, check_output_folders, check_schema, train_settings
from pfs.grid import NUMBER, full_runs, pruned_runs, random_runs, uniform_runs

check_schema(config, f"{workflow.basedir}/schemas/config.schema.yaml")  # one clear line naming a bad key
validate(config, "../schemas/config.schema.yaml", set_default=True)  # fills in the defaults
check_config(config)


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


def all_metrics():
    pruned = [f"results/{PRUNED}/{{schedule}}/metrics.json".format(**r) for r in pruned_runs(config)]
    full = [f"results/{FULL}/metrics.json".format(**r) for r in full_runs(config)]
    uniform = [f"results/{UNIFORM}/seed{{seed}}/{{schedule}}/metrics.json".format(**r) for r in uniform_runs(config)]
    random = [f"results/{RANDOM_PRUNED}/{{schedule}}/metrics.json".format(**r) for r in random_runs(config)]
    return pruned + full + uniform + random


def experiment_files(name):
    """results/{EXP}/<name> of every gate-learning run of the grid, de-duplicated in order."""
    return list(dict.fromkeys(f"results/{EXP}/{name}".format(**r) for r in pruned_runs(config)))


def all_channels():
    """Every channels.yaml of the grid (gate-pruned, uniform, random gates), de-duplicated in order."""
    pruned = [f"results/{PRUNED}/channels.yaml".format(**r) for r in pruned_runs(config)]
    uniform = [f"results/{UNIFORM}/channels.yaml".format(**r) for r in uniform_runs(config)]
    random = [f"results/{RANDOM_PRUNED}/channels.yaml".format(**r) for r in random_runs(config)]
    return list(dict.fromkeys(pruned + uniform + random))


def all_model_targets():
    return [m.replace("metrics.json", "model.pt") for m in all_metrics()]


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

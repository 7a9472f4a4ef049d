# Config validation, wildcard constraints, path templates and target lists. No rules here.

from snakemake.utils import validate

from pfs.workflow import NUMBER, check_config, check_schema, full_runs, pruned_runs

check_schema(config, f"{workflow.basedir}/schemas/config.schema.yaml")  # one clear line naming a bad key
validate(config, "../schemas/config.schema.yaml", set_default=True)  # fills in the defaults
check_config(config)


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
SUMMARY = "results/summary.csv"
IMAGENET_LISTS = {split: f"results/imagenet/lists/{split}.csv" for split in ("train", "val")}
RUN_FILES = ("model.pt", "metrics.json", "history.csv")


def run_outputs(run_dir):
    """Named outputs of a training job under results/{run_dir}/."""
    return {name.split(".")[0]: f"results/{run_dir}/{name}" for name in RUN_FILES}


def gpu_resources():
    """Resources of the GPU jobs; each retry (resources.retries) gets a longer wall-time limit."""
    res = config["resources"]
    return {"gpu": res["gpu"], "mem_mb": res["mem_mb"], "runtime": lambda wildcards, attempt: res["runtime"] * attempt}


def section_params(name):
    """A config section as one param, keys sorted: Snakemake compares params by repr(), so without this a mere
    reordering of keys (another --configfile, a key moved or left to its default) would rerun the stage."""
    return dict(sorted(config[name].items()))


def split_params():
    """Dataset settings that change results (the split); location settings are read by the scripts."""
    return {k: config["dataset"][k] for k in ("val_size", "split_seed")}


def all_metrics():
    pruned = [f"results/{PRUNED}/{{schedule}}/metrics.json".format(**r) for r in pruned_runs(config)]
    full = [f"results/{FULL}/metrics.json".format(**r) for r in full_runs(config)]
    return pruned + full


def all_model_targets():
    return [m.replace("metrics.json", "model.pt") for m in all_metrics()]

# Config validation, the output folders checked before a run, wildcard constraints, path templates and target lists.
# No rules here.

import os
import time

from snakemake.logging import logger
from snakemake.utils import validate

from pfs.workflow.config import ConfigError, check_config, check_output_folders, check_schema, coerce_overrides
from pfs.workflow.config import finetune_settings, sparse_settings, train_settings
from pfs.data.datatree import fingerprint
from pfs.core.numerics import rule_params as numerics_params
from pfs.workflow.slurm_check import check_workflow as check_slurm_status
from pfs.workflow.memory import DeclaredJob, job_mem_mb, overruns
from pfs.core.grid import NUMBER, full_runs, l1_runs, l1_scratch_runs, pruned_runs, random_runs, uniform_runs
from pfs.core.grid import slim_runs, slim_scratch_runs

# a bad value stops the run with ONE line naming the key and the fix: a SystemExit passes through Snakemake, so
# Python prints its message alone and exits 1 (any other exception gets "ConfigError in file ..." and a traceback)
try:
    # values nested in --config (train='{epochs: 6}') arrive as strings: give them the schema's types first
    coerce_overrides(config, f"{workflow.basedir}/schemas/config.schema.yaml")
    check_schema(config, f"{workflow.basedir}/schemas/config.schema.yaml")  # one clear line naming a bad key
    validate(config, "../schemas/config.schema.yaml", set_default=True)  # fills in the defaults
    check_config(config)
except ConfigError as exc:
    raise SystemExit(f"error: {exc}") from None
# the dataset's files as the jobs would see them (pfs.data.datatree): a param of every rule that reads them, so changed
# data reruns those jobs and what follows; moved data (another dataset.root) reruns nothing
DATA = fingerprint(config["dataset"]["name"], config["dataset"]["root"], config["dataset"]["check_md5"])
# how the jobs compute (pfs.core.numerics: native or pinned, and the pinned thread count): a param of every rule whose
# floats it changes, so switching it reruns gate learning and training, and nothing that only reads their files
NUMERICS = numerics_params(config)


onstart:
    # a real run only (a dry run of a read-only finished run is fine): one line before any job, no traceback
    check_output_folders(["results", "logs", "benchmarks", config["checkpoint_dir"]])
    # under --executor slurm, before the first job is submitted: refuse a job status command that cannot work here
    # (pfs.workflow.slurm_check: a sacct without accounting would make the run wait forever)
    check_slurm_status(workflow)


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
# classic baseline: the trained standard network (train_full's model) of each seed, L1-pruned: channels.yaml and
# pruned.pt, then finetune/ (the pruned weights fine-tuned) and {schedule}/ (the L1 architecture from scratch)
L1 = "{dataset}/{arch}/l1/seed{seed}/p{ratio}"
PRETRAINED = "{dataset}/{arch}/full/seed{seed}/scratch_e"  # the train_full run whose model.pt L1 pruning reads
# network slimming (grid.slimming_baseline): the standard network trained with the BN sparsity penalty (sparse/, a
# pretraining, not a results row), pruned by BN scale: channels.yaml and pruned.pt, then finetune/ and {schedule}/
SPARSE = "{dataset}/{arch}/slim/seed{seed}/sparse"
SLIM = "{dataset}/{arch}/slim/seed{seed}/p{ratio}"
SUMMARY = "results/summary.csv"
TABLES = {
    "table_csv": "results/table.csv",
    "table_md": "results/table.md",
    "comparison_csv": "results/comparison.csv",
    "table_html": "results/table.html",  # the two tables as HTML: what the report shows inline
    "comparison_html": "results/comparison.html",
}
PLOTS = {
    name: f"results/plots/{name}.png"
    for name in ("accuracy", "accuracy_cost", "widths", "gate_histograms", "gate_learning", "training_curves")
}
IMAGENET_LISTS = {split: f"results/imagenet/lists/{split}.csv" for split in ("train", "val")}
IMAGENET = config["dataset"]["name"] == "imagenet"
RUN_FILES = ("model.pt", "metrics.json", "history.csv")


def run_outputs(run_dir):
    """Named outputs of a training job under results/{run_dir}/."""
    return {name.split(".")[0]: f"results/{run_dir}/{name}" for name in RUN_FILES}


def gpu_resources(max_gpu=None, stage="train"):
    """Resources of the GPU jobs of ``stage`` (gates or train; at most ``max_gpu`` GPUs); each retry
    (resources.retries) gets a longer wall-time limit. ``mem_mb: auto``: estimated per job from its arch, the
    dataset, workers, batch size and GPUs (pfs.workflow.memory: measured figures, torch-free)."""
    res = config["resources"]
    gpu = res["gpu"] if max_gpu is None else min(res["gpu"], max_gpu)
    mem_mb = res["mem_mb"]
    if mem_mb == "auto":
        mem_mb = lambda wildcards: job_mem_mb(config, wildcards.arch, stage, gpu)
    return {"gpu": gpu, "mem_mb": mem_mb, "runtime": lambda wildcards, attempt: res["runtime"] * attempt}


RUN_STARTED = time.time()  # benchmark files written since then are this run's


def warn_memory_overruns():
    """After a run (onsuccess, onerror): one WARNING line per job of this run whose benchmark file shows a peak
    memory (max_pss, pfs.workflow.memory.overruns) above the mem_mb it declared. A courtesy: it never fails a run."""
    try:
        ran = [
            job
            for job in workflow.dag.jobs
            if job.benchmark and os.path.isfile(job.benchmark) and os.path.getmtime(job.benchmark) >= RUN_STARTED
        ]
        found = overruns(
            DeclaredJob(job.benchmark, job.resources.get("mem_mb"), job.rule.name, job.resources.get("gpu") is not None)
            for job in ran
        )
    except Exception as exc:  # Snakemake's job objects moved: say so, and carry on
        logger.debug(f"memory check of the benchmark files skipped: {exc}")
        return
    for overrun in found:
        logger.warning(f"WARNING {overrun.message(config['resources']['mem_mb'])}")


onsuccess:
    warn_memory_overruns()


onerror:
    warn_memory_overruns()


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


def finetune_params(wildcards):
    """The train settings of a fine-tuning job: the finetune section over the arch's train settings."""
    return finetune_settings(config, wildcards.arch)


def sparse_params(wildcards):
    """The train settings of slimming's sparsity training: the arch's train settings plus bn_sparsity (slimming.s)."""
    return sparse_settings(config, wildcards.arch)


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
        "l1": (l1_scratch_runs(config), f"{L1}/channels.yaml", f"{L1}/{{schedule}}"),
        "l1_finetune": (l1_runs(config), f"{L1}/channels.yaml", f"{L1}/finetune"),
        "slim": (slim_scratch_runs(config), f"{SLIM}/channels.yaml", f"{SLIM}/{{schedule}}"),
        "slim_finetune": (slim_runs(config), f"{SLIM}/channels.yaml", f"{SLIM}/finetune"),
    }


def _chain_steps():
    """Per run kind, the jobs whose work a trained network of that kind took, as benchmark file templates under
    benchmarks/ (its own training last). ImageNet's list preparation comes first in every chain."""
    lists = ["imagenet/lists/prepare_imagenet_list"] if IMAGENET else []
    return {
        "pfs": [*lists, f"{EXP}/learn_gates", f"{PRUNED}/prune", f"{PRUNED}/{{schedule}}/train_pruned"],
        "full": [*lists, f"{FULL}/train_full"],
        "uniform": [*lists, f"{UNIFORM}/prune_uniform", f"{UNIFORM}/seed{{seed}}/{{schedule}}/train_uniform"],
        "random": [
            *lists,
            f"{RANDOM}/random_gates",
            f"{RANDOM_PRUNED}/prune_random",
            f"{RANDOM_PRUNED}/{{schedule}}/train_random",
        ],
        "l1": [*lists, f"{PRETRAINED}/train_full", f"{L1}/prune_l1", f"{L1}/{{schedule}}/train_l1"],
        "l1_finetune": [*lists, f"{PRETRAINED}/train_full", f"{L1}/prune_l1", f"{L1}/finetune/finetune_l1"],
        "slim": [*lists, f"{SPARSE}/train_sparse", f"{SLIM}/prune_slim", f"{SLIM}/{{schedule}}/train_slim"],
        "slim_finetune": [*lists, f"{SPARSE}/train_sparse", f"{SLIM}/prune_slim", f"{SLIM}/finetune/finetune_slim"],
    }


def run_chains():
    """metrics.json of every training run -> the benchmark files of its whole chain (pfs.results.cost sums them; a job in
    several chains, such as one gate learning serving several ratios, is shared)."""
    steps = _chain_steps()
    return {
        f"results/{folder}/metrics.json".format(**r): [f"benchmarks/{step}.tsv".format(**r) for step in steps[kind]]
        for kind, (runs, _, folder) in run_kinds().items()
        for r in runs
    }


def chain_inputs():
    """run_chains as named inputs of summarize: chain_{i}, the benchmark files of the chain of all_metrics()'s i-th
    metrics.json. Inputs, not a param: the report lists a rule's params beside every file it made, and this mapping
    would fill the page beside the results table; as inputs the benchmark files are tracked (a rerun job
    resummarizes) and a change of the grid still changes the set."""
    chains = run_chains()
    return {f"chain_{i}": chains[metrics] for i, metrics in enumerate(all_metrics())}


def run_files(name):
    """results/<training folder>/<name> of every training run of the grid (metrics.json, model.pt, ...)."""
    return [f"results/{folder}/{name}".format(**r) for runs, _, folder in run_kinds().values() for r in runs]


def all_metrics():
    return run_files("metrics.json")


def all_model_targets():
    return run_files("model.pt")


def all_exports():
    """model.onnx beside every trained model.pt (rule export), when grid.export is on."""
    return run_files("model.onnx") if config["grid"]["export"] else []


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
            raise SystemExit(  # one line, no traceback (see the config checks at the top)
                f"error: target paper_{dataset} runs the grid of {configfile}, but the config has dataset "
                f"{config['dataset']['name']}: add --configfile {configfile} (after the targets)"
            )
        return [SUMMARY, *TABLES.values(), *PLOTS.values(), *all_model_targets(), *all_exports()]

    return inputs


def job_retries():
    """The retries: of the GPU rules (config resources.retries), counted by the main Snakemake process only. In a
    job's own Snakemake (in the sbatch job, or a local job's subprocess) Snakemake passes --retries 0, since the
    main process handles retries, but a retries: directive overrides that: a signalled training job would be
    restarted inside its allocation, under the same time limit, before the main process resubmits it."""
    return config["resources"]["retries"] if workflow.is_main_process else 0

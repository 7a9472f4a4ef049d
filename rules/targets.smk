# Target lists: the grid's training runs kind by kind, the chain of jobs behind each, and the files the summary,
# the plots and the all / paper_* targets ask for. No rules here.

from pfs.core.grid import full_runs, l1_runs, l1_scratch_runs, pruned_runs, random_runs, uniform_runs
from pfs.core.grid import slim_runs, slim_scratch_runs


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
    benchmarks/ (its own training last). ImageNet's or a folder's list preparation comes first in every chain."""
    dataset = config["dataset"]["name"]
    indexing = {"imagenet": "prepare_imagenet_list", "folder": "prepare_folder_list"}.get(dataset)
    lists = [f"{dataset}/lists/{indexing}"] if indexing else []
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

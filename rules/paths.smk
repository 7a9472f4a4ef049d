# Path templates of the results tree (EXP, PRUNED, FULL, ...), the summary, tables and plots, and the helpers that
# name a rule's outputs and inputs by them. No rules here.

from pfs.core.catalog import use_folder_stats

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
# a folder dataset's index tables and its stats.yaml (image size, mean, std, classes: pfs.data.folder)
FOLDER_LISTS = {
    **{split: f"results/folder/lists/{split}.csv" for split in ("train", "val")},
    "stats": "results/folder/lists/stats.yaml",
}
if FOLDER:  # every job's pfs.core.catalog.dataset_info("folder") reads its image size, mean and std there
    use_folder_stats(FOLDER_LISTS["stats"])
RUN_FILES = ("model.pt", "metrics.json", "history.csv")


def run_outputs(run_dir):
    """Named outputs of a training job under results/{run_dir}/."""
    return {name.split(".")[0]: f"results/{run_dir}/{name}" for name in RUN_FILES}


def index_inputs():
    """ImageNet jobs read the index tables of prepare_imagenet_list, folder jobs those of prepare_folder_list and its
    stats.yaml; other datasets need no input for their data."""
    if FOLDER:
        return {"train_list": FOLDER_LISTS["train"], "val_list": FOLDER_LISTS["val"], "stats": FOLDER_LISTS["stats"]}
    return {"train_list": IMAGENET_LISTS["train"], "val_list": IMAGENET_LISTS["val"]} if IMAGENET else {}


def reported(path, caption, category):
    """An output shown in the Snakemake report with its caption (report/), under category / the dataset."""
    return report(
        path,
        caption=f"../report/{caption}",
        category=category,
        subcategory=config["dataset"]["name"],
    )

# Pruning from Scratch (Wang et al., AAAI 2020) as a Snakemake workflow.
#
# Results path grammar (numbers written one canonical way: 0.5, 1, 80):
#   results/{dataset}/{arch}/e{expansion}_m{multiplier}/s{sparsity}/seed{seed}/gates.pt, gates_metrics.csv
#       .../p{ratio}/channels.yaml
#       .../p{ratio}/{schedule}/model.pt, metrics.json, history.csv      schedule: scratch_e | scratch_b
#       .../model.onnx                                                  beside every model.pt (grid.export)
#   results/{dataset}/{arch}/full/seed{seed}/{schedule}/...               unpruned standard-width baseline
#   results/{dataset}/{arch}/l1/seed{seed}/p{ratio}/channels.yaml, pruned.pt   classic baseline: the full model
#       .../finetune/..., .../{schedule}/...                              L1-pruned, fine-tuned / from scratch
#   results/{dataset}/{arch}/slim/seed{seed}/sparse/...                   network slimming: sparsity training,
#       .../p{ratio}/channels.yaml, pruned.pt, finetune/, {schedule}/     BN-scale pruned, fine-tuned / from scratch
#   results/imagenet/lists/{train,val}.csv                                ImageNet index (prepare_imagenet_list)
#   results/folder/lists/{train,val}.csv, stats.yaml                      your own images (prepare_folder_list)
#   results/summary.csv                                                   one row per trained network
#   results/table.csv, table.md                                           runs grouped over seeds (mean, std, n)
#   results/plots/*.png                                                   accuracy vs MACs, widths, gates
#   snakemake --report report.html                                        all of it as one browsable page
# Logs mirror results under logs/, job timings under benchmarks/.
#
#   snakemake --cores all                                         default experiment (embedded digits, CPU)
#   snakemake --cores all paper_cifar10 --configfile configs/paper_cifar10.yaml     the paper's CIFAR-10 grid
#   snakemake --workflow-profile profiles/slurm paper_imagenet --configfile configs/paper_imagenet.yaml
#                                                                 the paper's ImageNet grid (torchrun, 8 GPUs a job)


from snakemake.utils import min_version

min_version("9.0")


configfile: "config.yaml"


report: "report/workflow.rst"


include: "rules/config.smk"
include: "rules/paths.smk"
include: "rules/targets.smk"
include: "rules/resources.smk"
include: "rules/gates.smk"
include: "rules/prune.smk"
include: "rules/train.smk"
include: "rules/classic.smk"
include: "rules/summarize.smk"
include: "rules/export.smk"
include: "rules/imagenet.smk"
include: "rules/folder.smk"


rule all:
    default_target: True
    input:
        SUMMARY,
        TABLES.values(),
        PLOTS.values(),
        all_model_targets(),
        all_exports(),


# the paper's grids: snakemake --cores all paper_cifar10 --configfile configs/paper_cifar10.yaml
rule paper_cifar10:
    input:
        paper_target("cifar10", "configs/paper_cifar10.yaml"),


rule paper_imagenet:
    input:
        paper_target("imagenet", "configs/paper_imagenet.yaml"),

# ImageNet only: index dataset.root/train and dataset.root/val once, so loaders never walk the tree again.
# The root is read by the script from the config: it is a location, so moving the data reruns nothing.
rule prepare_imagenet_list:
    output:
        train=IMAGENET_LISTS["train"],
        val=IMAGENET_LISTS["val"],
    log:
        "logs/imagenet/lists/prepare_imagenet_list.log",
    conda:
        "../envs/pfs.yaml"
    script:
        "../workflow_scripts/prepare_imagenet_list.py"

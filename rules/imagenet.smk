# ImageNet only: index dataset.root/train and dataset.root/val once, so loaders never walk the tree again.
# The root is read by the script from the config: it is a location, so moving the data reruns nothing; the tree's
# fingerprint (DATA: class folders and image names) is a param, so an image added, removed or renamed reruns it.
rule prepare_imagenet_list:
    output:
        train=IMAGENET_LISTS["train"],
        val=IMAGENET_LISTS["val"],
    log:
        "logs/imagenet/lists/prepare_imagenet_list.log",
    benchmark:
        "benchmarks/imagenet/lists/prepare_imagenet_list.tsv"
    conda:
        "../envs/pfs.yaml"
    # processes that decode every image when dataset.verify_images is on
    threads: config["resources"]["threads"]
    params:
        data=DATA,
    script:
        "../workflow_scripts/prepare_imagenet_list.py"

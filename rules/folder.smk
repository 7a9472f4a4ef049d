# A folder of your own images (dataset.name: folder): index dataset.root/train and dataset.root/val (or hold out
# dataset.val_fraction of train/) once, and write the image size, mean and std every job reads (stats.yaml;
# pfs.data.folder). The root is a location, read by the script: moving the data reruns nothing; the tree's
# fingerprint (DATA) and the settings list preparation applies (image size, hold-out, given mean and std) are params.
rule prepare_folder_list:
    output:
        train=FOLDER_LISTS["train"],
        val=FOLDER_LISTS["val"],
        stats=FOLDER_LISTS["stats"],
    log:
        "logs/folder/lists/prepare_folder_list.log",
    benchmark:
        "benchmarks/folder/lists/prepare_folder_list.tsv"
    conda:
        "../envs/pfs.yaml"
    # processes that decode every image (dataset.verify_images) and compute the mean and std of a large tree
    threads: config["resources"]["threads"]
    params:
        data=DATA,
        lists=folder_list_params(),
    script:
        "../workflow_scripts/prepare_folder_list.py"

# The deployable form of every trained network (grid.export): model.onnx beside its model.pt, gates merged and
# BatchNorm folded into the convs, checked against the PyTorch model on random inputs (pfs.stages.export).


rule export:
    input:
        model="results/{run_dir}/model.pt",
    output:
        onnx=reported("results/{run_dir}/model.onnx", "onnx.rst", "Deployable networks"),
    log:
        "logs/{run_dir}/export.log",
    benchmark:
        "benchmarks/{run_dir}/export.tsv"
    conda:
        "../envs/pfs.yaml"
    threads: config["resources"]["threads"]
    script:
        "../workflow_scripts/export.py"

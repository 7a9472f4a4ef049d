"""export: a trained model.pt -> model.onnx beside it (gates merged, BatchNorm folded, checked against PyTorch)."""

from _common import run_stage

from pfs.stages.export import export_onnx


def main(inputs, outputs, log_path, threads=1):
    with run_stage(log_path, threads):
        export_onnx(inputs["model"], outputs["onnx"])


if "snakemake" in globals():
    sm = snakemake  # noqa: F821
    main(sm.input, sm.output, sm.log[0], sm.threads)

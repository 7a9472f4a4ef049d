"""plot_results: results/plots/*.png from the table (accuracy against MACs and against cost), the channels files, the
gates, the gate-learning curves and every training run's history (training curves)."""

from _common import run_stage

from pfs.results.plots import (
    accuracy_vs_cost,
    accuracy_vs_macs,
    channel_widths,
    gate_histograms,
    gate_learning,
    labelled_histories,
    training_curves,
)


def main(inputs, outputs, params, wildcards, config, log_path, threads=1):
    import pandas as pd

    from pfs.models import default_widths

    with run_stage(log_path, threads):
        table = pd.read_csv(inputs["table"])
        accuracy_vs_macs(table, outputs["accuracy"], pd.read_csv(inputs["comparison"]))
        accuracy_vs_cost(table, outputs["accuracy_cost"])  # each network's chain's cost (pfs.results.cost)
        # every method's kept widths against the standard network's (the workflow may import pfs.models; results not)
        channel_widths(list(inputs["channels"]), outputs["widths"], default_widths)
        # each pruning threshold on the gates it was found in (channels.yaml names its gates file)
        gate_histograms(list(inputs["gates"]), outputs["gate_histograms"], channels_files=list(inputs["channels"]))
        # each history is labelled with the identity in the gates.pt at its position (one of each per run)
        gate_learning(labelled_histories(list(inputs["gates"]), list(inputs["histories"])), outputs["gate_learning"])
        # one metrics.json and one history.csv per training run, in the same order
        runs = list(zip(inputs["metrics"], inputs["train_histories"], strict=True))
        training_curves(runs, outputs["training_curves"])


if "snakemake" in globals():
    sm = snakemake  # noqa: F821
    main(sm.input, sm.output, sm.params, sm.wildcards, sm.config, sm.log[0], sm.threads)

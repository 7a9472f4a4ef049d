"""The application layer: one module per workflow stage (learn_gates, prune, classic, train, export), each reading
its input files, checking them, calling the method and training code, and writing its outputs; the files between
stages (artifacts), the experiment's identity (experiment) and the torchrun launcher (launch).

Workflow scripts call these (``python -m pfs train`` and ``export`` too); nothing here knows about Snakemake. May
import every layer below (method, training, data, models, core), never pfs.results or pfs.workflow.
"""

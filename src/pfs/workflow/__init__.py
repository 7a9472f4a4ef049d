"""What the Snakemake workflow needs beside the stages: config checks at DAG-building time (config), the mem_mb
estimate and the after-run memory check (memory), the SLURM status check (slurm_check), GPU slots of local jobs
(gpu_slots), job logs that survive retries (joblog) and the docs site's generated reference pages (docs).

Torch-free: rules/*.smk import these while Snakemake builds the DAG. May import pfs.core and pfs.results (the
config check reads the references file through pfs.results.references).
"""

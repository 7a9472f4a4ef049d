"""What a user reads: summary.csv (summary), the seed-grouped tables (tables), the published figures beside ours
(references), the compute of each chain (cost), the plots, the HTML tables of the report and README.md's generated
sections (readme).

Reads the files the stages wrote; may import pfs.core only (a dataset's test-set size is pfs.core.catalog's), never
the stages.
"""

"""The bottom layer, shared by every other: errors, atomic versioned files (io), the catalog of facts about each
dataset and architecture, the grid's number formats, provenance, numerics (how floats are computed), progress
lines and the chance level of a held-out set.

Imports nothing else of pfs. Most modules here are torch-free, so Snakemake reads the config quickly.
"""

"""Pruning from Scratch (Wang et al., AAAI 2020): gates on random weights, MACs-budgeted pruning, training."""

__version__ = "0.1.0"

"""The method and its baselines as pure steps: gate learning on frozen random weights (gates), the global ranking
and MACs-budget search (prune), MACs and parameter counts (macs), and the classic scores: filter L1 norms (l1) and
network slimming's BN scales (slim).

May import pfs.models, pfs.training (evaluation), pfs.core.
"""

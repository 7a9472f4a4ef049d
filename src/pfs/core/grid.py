"""The experiment grid: the canonical text of a number in a path, and the runs (one dict of wildcards each) that
the config's grid asks for.

Imported by rules/config.smk and rules/targets.smk while the DAG is built, so it must stay light (no torch import).
"""

from __future__ import annotations

import itertools

# wildcard constraints: a number is written one canonical way ("0.5", "1", never "0.50" or "1.0")
NUMBER = r"\d+(\.\d*[1-9])?"


def fmt(x: float | int) -> str:
    """Canonical text of a number in a path: 0.5 -> '0.5', 1.0 -> '1', 80 -> '80'."""
    text = repr(float(x))
    return text[:-2] if text.endswith(".0") else text


def multipliers(config: dict, arch: str) -> list[float]:
    """The backbone multipliers of ``arch`` in the grid ([1] unless grid.multipliers lists some)."""
    return list(config["grid"].get("multipliers", {}).get(arch, [1]))


def pruned_runs(config: dict) -> list[dict]:
    """One dict of wildcards per gate-pruned training run of the grid."""
    grid = config["grid"]
    runs = []
    for arch in grid["archs"]:
        for e, m, s, seed, p, sched in itertools.product(grid["expansions"][arch], multipliers(config, arch),
                                                         grid["sparsities"], grid["seeds"], grid["ratios"],
                                                         grid["schedules"]):
            runs.append({"dataset": config["dataset"]["name"], "arch": arch, "expansion": str(e),
                         "multiplier": fmt(m), "sparsity": fmt(s), "seed": str(seed), "ratio": fmt(p),
                         "schedule": sched})
    return runs


def full_runs(config: dict) -> list[dict]:
    """Wildcards of the unpruned standard-width baseline runs (one per arch and seed); the classic baseline
    (grid.pretrained_baseline) prunes these trained networks, so it needs them too."""
    grid = config["grid"]
    if not (grid["full_baseline"] or grid.get("pretrained_baseline")):
        return []
    return [{"dataset": config["dataset"]["name"], "arch": arch, "seed": str(seed), "schedule": "scratch_e"}
            for arch in grid["archs"] for seed in grid["seeds"]]


def uniform_runs(config: dict) -> list[dict]:
    """Wildcards of the uniform-width baseline runs (grid.uniform_baseline): per arch, ratio, seed and schedule."""
    grid = config["grid"]
    if not grid.get("uniform_baseline"):
        return []
    return [{"dataset": config["dataset"]["name"], "arch": arch, "ratio": fmt(p), "seed": str(seed),
             "schedule": sched}
            for arch, p, seed, sched in itertools.product(grid["archs"], grid["ratios"], grid["seeds"],
                                                          grid["schedules"])]


def random_runs(config: dict) -> list[dict]:
    """Wildcards of the random-gates ablation runs (grid.random_gates): the gate-pruned runs without their sparsity
    (random gates are drawn once per arch, expansion, multiplier and seed, then pruned to each ratio and trained
    with each schedule), de-duplicated in order."""
    if not config["grid"].get("random_gates"):
        return []
    runs = (tuple((k, v) for k, v in run.items() if k != "sparsity") for run in pruned_runs(config))
    return [dict(run) for run in dict.fromkeys(runs)]


def _classic_runs(config: dict, flag: str) -> list[dict]:
    """One dict of wildcards per arch, ratio and seed when ``grid.<flag>`` is on (each seed's trained standard
    network is pruned), without a schedule (pruning and fine-tuning have none)."""
    grid = config["grid"]
    if not grid.get(flag):
        return []
    return [{"dataset": config["dataset"]["name"], "arch": arch, "ratio": fmt(p), "seed": str(seed)}
            for arch, p, seed in itertools.product(grid["archs"], grid["ratios"], grid["seeds"])]


def l1_runs(config: dict) -> list[dict]:
    """Wildcards of the classic baseline's L1-pruned networks (grid.pretrained_baseline): per arch, ratio, seed."""
    return _classic_runs(config, "pretrained_baseline")


def _with_schedules(runs: list[dict], config: dict) -> list[dict]:
    """Each of ``runs`` with each schedule of the grid: a pruned architecture trained from scratch."""
    return [{**run, "schedule": sched} for run in runs for sched in config["grid"]["schedules"]]


def l1_scratch_runs(config: dict) -> list[dict]:
    """The classic baseline's L1-chosen architectures trained from scratch: each l1 run with each schedule."""
    return _with_schedules(l1_runs(config), config)


def slim_runs(config: dict) -> list[dict]:
    """Wildcards of network slimming's pruned networks (grid.slimming_baseline): per arch, ratio and seed (each
    seed's sparsity-trained standard network is pruned)."""
    return _classic_runs(config, "slimming_baseline")


def slim_scratch_runs(config: dict) -> list[dict]:
    """Network slimming's architectures trained from scratch: each slim run with each schedule."""
    return _with_schedules(slim_runs(config), config)

"""One number changed from the command line: --config section='{key: value}' through the real snakemake CLI, which
passes every value nested in it as a string (pfs.workflow.config.coerce_overrides gives them the schema's types)."""

from __future__ import annotations

import pytest
from smk_run import copy_workflow, error_lines, job_counts, snakemake, tail

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory):
    return copy_workflow(tmp_path_factory.mktemp("overrides"))


def test_nested_overrides_of_every_type_plan_the_grid(workdir):
    result = snakemake(workdir, "-n", "--configfile", "tiny.yaml", "--config", "train={epochs: 6}",
                       "gates={lr: 0.05, eval_interval: 4}", "train_by_arch={resnet20: {nesterov: true}}",
                       "grid={seeds: [0], full_baseline: false}", "resources={runtime: 30, mem_mb: 900}")
    assert result.returncode == 0, tail(result.stdout)
    jobs = job_counts(result.stdout)
    assert (jobs["learn_gates"], jobs["train_pruned"], "train_full" in jobs) == (1, 2, False), tail(result.stdout)
    assert "runtime=30, mem_mb=900" in result.stdout, tail(result.stdout)  # the numbers reached the jobs


def test_a_nested_override_is_checked_as_the_number_it_is(workdir):
    result = snakemake(workdir, "-n", "--configfile", "tiny.yaml", "--config", "train={epochs: 0}")
    assert result.returncode != 0
    assert error_lines(result.stdout) == [  # '0' read as 0: the range check speaks, not "'0' is not of type"
        "error: config train.epochs: 0 is less than the minimum of 1; fix it in the config file or --config (keys "
        f"and allowed values: {workdir}/schemas/config.schema.yaml)"], result.stdout

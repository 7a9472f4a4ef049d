"""After a real run, a job whose benchmark file shows more memory than it declared gets one WARNING line (the
onsuccess handler of rules/resources.smk, pfs.workflow.memory); a job within its mem_mb: auto gets none."""

from __future__ import annotations

import re

import pytest
from smk_run import EXP, FULL, snakemake, tail

pytestmark = pytest.mark.slow


def test_a_job_over_its_declared_memory_gets_one_warning_line(workflow_copy):
    # learn_gates is given 100 MB (a torch job takes several hundred), train_full keeps the config's auto
    result = snakemake(workflow_copy, f"{EXP}/gates.pt", f"{FULL}/model.pt", "--cores", "2",
                       "--set-resources", "learn_gates:mem_mb=100", "--configfile", "tiny.yaml")
    assert result.returncode == 0, tail(result.stdout)
    warnings = [line for line in result.stdout.splitlines() if "used more memory than it declared" in line]
    benchmark = f"benchmarks/{EXP[len('results/'):]}/learn_gates.tsv"
    assert len(warnings) == 1, tail(result.stdout)
    line = warnings[0]
    assert line.startswith("WARNING job learn_gates") and benchmark in line
    used = re.search(r"max_[pr]ss (\d+) MB > mem_mb 100 ", line)
    assert used and int(used[1]) > 100, line
    assert "resources.mem_mb (now auto)" in line and "set-resources: {learn_gates: {mem_mb: " in line
    assert (workflow_copy / benchmark).is_file()

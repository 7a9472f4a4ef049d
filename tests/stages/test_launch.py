"""The reason a failed torchrun job gives (pfs.stages.launch): read from torchrun's side file, this launch's part."""

from __future__ import annotations

import os

from pfs.stages.launch import failure_reason, torchrun_log

CHILD_FAILED = "torch.distributed.elastic.multiprocessing.errors.ChildFailedError: \n====\npfs FAILED\n"


def test_the_side_file_sits_beside_the_job_log():
    assert torchrun_log("logs/x/train_pruned.log") == "logs/x/train_pruned.log.torchrun"
    assert torchrun_log(None) == os.devnull


def test_the_reason_is_a_ranks_error_line_else_its_exception_line_never_torchruns(tmp_path):
    side = tmp_path / "train.log.torchrun"
    side.write_text("error: an old launch's reason\n")
    start = side.stat().st_size  # a resumed job appends: only this launch's lines count
    with open(side, "a") as fh:
        fh.write("Traceback (most recent call last):\n  File \"x.py\", line 1\nRuntimeError: CUDA out of memory\n"
                 + CHILD_FAILED)
    assert failure_reason(str(side), start) == "a rank raised RuntimeError: CUDA out of memory"
    with open(side, "a") as fh:
        fh.write("error: unknown arch 'resnet99'\n" + CHILD_FAILED)
    assert failure_reason(str(side), start) == "unknown arch 'resnet99'"
    assert failure_reason(str(side), side.stat().st_size) == "no rank gave a reason (killed? out of memory?)"

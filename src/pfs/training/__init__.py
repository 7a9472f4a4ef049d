"""Training a network: the loop with its optimisers, schedules, evaluation and resume (loop), atomic checkpoints
(checkpoint), the device and torchrun's process group (distributed), and the batches a job iterates (loaders).

May import pfs.data and pfs.core; knows nothing of the method, the stages or the workflow.
"""

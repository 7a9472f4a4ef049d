"""Reading datasets: where and how a job reads (settings), the in-memory ones (digits, CIFAR) and their loaders
(datasets), folder trees of class folders with their fingerprint and checks (datatree) and index tables plus the
image check (index), ImageNet's images read through those tables (imagenet), the user's own class folders at any
image size (folder), and batches held on the device (device_data).

May import pfs.core only.
"""

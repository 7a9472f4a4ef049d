"""Reading datasets: where and how a job reads (settings), the in-memory ones (digits, CIFAR) and their loaders
(datasets), the ImageNet-style folder trees and their index tables (datatree, imagenet), and batches held on the
device (device_data).

May import pfs.core only.
"""

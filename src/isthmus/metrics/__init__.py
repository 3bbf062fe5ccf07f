"""Metrics: reconstruction, clustering and linear-probe quality. numpy/torch/scipy/sklearn only."""

from isthmus.metrics.clustering import ari, cluster_report, clustering_accuracy, contingency, nmi
from isthmus.metrics.probe import linear_probe_accuracy
from isthmus.metrics.reconstruction import bce, mse, per_sample_mse, psnr

__all__ = [
    "mse",
    "bce",
    "psnr",
    "per_sample_mse",
    "clustering_accuracy",
    "nmi",
    "ari",
    "cluster_report",
    "contingency",
    "linear_probe_accuracy",
]

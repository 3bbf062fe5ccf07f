"""Metrics: reconstruction, clustering, anomaly detection and linear-probe quality. numpy/torch/scipy/sklearn only."""

from isthmus.metrics.anomaly import (
    BestF1, anomaly_report, auprc, auroc, best_f1, interpretation_hit_rate, point_adjusted_f1, precision_at_n,
)
from isthmus.metrics.disentanglement import dci, infomec, mig, nmi_matrix
from isthmus.metrics.clustering import ari, cluster_report, clustering_accuracy, contingency, nmi
from isthmus.metrics.probe import linear_probe_accuracy
from isthmus.metrics.reconstruction import bce, mse, per_sample_mse, psnr

__all__ = [
    "auroc",
    "auprc",
    "precision_at_n",
    "best_f1",
    "BestF1",
    "point_adjusted_f1",
    "interpretation_hit_rate",
    "anomaly_report",
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
    "infomec",
    "nmi_matrix",
    "mig",
    "dci",
]

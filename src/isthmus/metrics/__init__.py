"""Metrics: reconstruction, clustering, anomaly detection, latent structure and linear-probe quality. numpy/torch/scipy/sklearn only."""

from isthmus.metrics.anomaly import (
    BestF1,
    anomaly_report,
    auprc,
    auroc,
    best_f1,
    interpretation_hit_rate,
    point_adjusted_f1,
    precision_at_n,
)
from isthmus.metrics.anomaly_series import VUS, RangeScores, range_f1, range_precision_recall, vus
from isthmus.metrics.disentanglement import dci, disentanglement_report, infomec, mig, nmi_matrix
from isthmus.metrics.generative import frechet_distance, generative_report, inception_score
from isthmus.metrics.clustering import ari, cluster_report, clustering_accuracy, contingency, nmi
from isthmus.metrics.latent import (
    active_units,
    kl_active_units,
    nearest_sq_distances,
    pca_dims_for_variance,
    principal_angles,
    softmax_confidence,
)
from isthmus.metrics.probe import linear_probe_accuracy
from isthmus.metrics.reconstruction import bce, mse, per_sample_mse, psnr
from isthmus.metrics.retrieval import mrr_at_k, ndcg_at_k, recall_at_k, retrieval_report
from isthmus.metrics.sae import (  # sparse autoencoders (issue 3)
    FiringTracker,
    cosine_similarity,
    density_histogram,
    evaluate_sae,
    explained_variance,
    fvu,
    l0,
    loss_recovered,
    loss_recovered_from_callables,
    sae_mse,
)

__all__ = [
    "auroc",
    "auprc",
    "precision_at_n",
    "best_f1",
    "BestF1",
    "point_adjusted_f1",
    "interpretation_hit_rate",
    "anomaly_report",
    "range_precision_recall",
    "range_f1",
    "RangeScores",
    "vus",
    "VUS",
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
    "disentanglement_report",
    "frechet_distance",
    "inception_score",
    "generative_report",
    "active_units",
    "kl_active_units",
    "pca_dims_for_variance",
    "principal_angles",
    "nearest_sq_distances",
    "softmax_confidence",
    # sparse autoencoders (issue 3)
    "l0",
    "sae_mse",
    "fvu",
    "explained_variance",
    "cosine_similarity",
    "FiringTracker",
    "density_histogram",
    "loss_recovered",
    "loss_recovered_from_callables",
    "evaluate_sae",
    # retrieval (issue 7, seed 11)
    "mrr_at_k",
    "recall_at_k",
    "ndcg_at_k",
    "retrieval_report",
]

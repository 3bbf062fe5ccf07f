"""Seed 14 — SCGC: an MLP autoencoder with a DEC head and a neighbourhood-contrastive loss over adjacency
powers clusters graphs better than GNN deep clustering (SDCN), without graph convolutions.

Kulatilleke, Portmann, Chandra 2022, arXiv 2204.12656; code ``gayanku/SCGC``. Everything but the
SDCN baseline comes from the library: :class:`~isthmus.tasks.deep_clusterer.DeepClusterer` (Student-t
head, target refreshed every epoch, full batch, argmax q), ``neighbour_contrastive`` over
``Â^r = (D⁻¹(A+I))^r`` (cumulative for SCGC*, the authors' ``--influence``).

Referee card (``cards-G-H-K.md``, seed 14) followed: Cora with the authors' Citeseer command verbatim
(α 1, β 0.1, r 1, τ 0.25, lr 1e-4) in record mode, digits + a k = 3 kNN graph with the authors' USPS
SCGC* command (α 4, β 0.1, r 4, τ 0.25, lr 1e-3) in quick mode; one AE pretrained per seed and shared by
every arm; widths 256-256-512 in every arm (the paper's 500-500-2000 shrunk, the claim is about the
loss); final-epoch NMI gated, the authors' label-peeking maximum over epochs reported only.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Mapping, TypeAlias, cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from isthmus.data.graphs import knn_graph, load_planetoid, normalize_adjacency
from isthmus.metrics.clustering import ari, clustering_accuracy, nmi
from isthmus.models import AutoEncoder
from isthmus.nn import MLP
from isthmus.nn.cluster_head import ClusterHead, target_distribution
from isthmus.nn.gcn import GCNLayer
from isthmus.recipes.base import Paper, Recipe, RecipeSettings
from isthmus.recipes.gates import Check, Gate, Measured, Precondition
from isthmus.recipes.registry import register_recipe
from isthmus.tasks.deep_clusterer import DeepClusterer
from isthmus.train import Trainer, TrainerConfig

HIDDEN = (256, 256, 512)
LATENT = 10


@dataclass
class Settings(RecipeSettings):
    dataset: str = "cora"  # "cora" or "digits" (k-NN graph)
    knn: int = 3
    pretrain_epochs: int = 30  # SDCN's data/pretrain.py: 30 epochs, batch 256, Adam 1e-3, MSE
    row_normalise: bool = False  # False: binary bag-of-words as in SDCN's data/cite.txt (the authors' input)
    epochs: int = 200
    alpha: float = 1.0  # neighbourhood-contrastive weight
    beta: float = 0.1  # KL(P||Q) weight
    r: int = 1
    tau: float = 0.25
    lr: float = 1e-4
    sdcn_lr: float = 1e-4
    n_subsample: int = 0  # 0 = every node (smoke uses a few hundred)
    scgc_arm: bool = True  # SCGC with decoder: reported, never gated; record drops it (the card's budget rule)


@lru_cache(maxsize=2)
def load(dataset: str, knn: int, n_subsample: int, row_normalise: bool = False):
    """``(X, y, A)``: Cora (binary bag-of-words, as SDCN/SCGC feed Citeseer; ``row_normalise`` divides by
    the word count, which shrank the inputs ~18x and left the pretrained AE no better than raw k-means)
    or digits with a kNN graph."""
    if dataset == "cora":
        table, A = load_planetoid("cora")
        X = table.X / np.maximum(table.X.sum(1, keepdims=True), 1.0) if row_normalise else table.X
        y = table.y
    elif dataset == "digits":
        from isthmus.data import load_digits

        t = load_digits()
        X, y = t.X.reshape(len(t.X), -1), t.y  # already scaled to [0, 1]
        A = None
    else:
        raise ValueError(f"dataset must be 'cora' or 'digits', got {dataset!r}")
    assert y is not None  # both datasets are labelled
    if n_subsample:
        idx = np.random.default_rng(0).permutation(len(X))[:n_subsample]
        X, y = X[idx], y[idx]
        A = A[idx][:, idx] if A is not None else None
    if A is None:
        A = knn_graph(X, knn)
    return np.ascontiguousarray(X, dtype=np.float32), np.asarray(y), A


def _scores(y, labels) -> dict[str, float]:
    return {"nmi": nmi(y, labels), "acc": clustering_accuracy(y, labels), "ari": ari(y, labels)}


def _converged(label_change: list[float]) -> float:
    """1.0 when fewer than 1 % of labels changed in each of the last 10 epochs (the card's rule)."""
    return float(len(label_change) >= 10 and max(label_change[-10:]) < 0.01)


# ---- SDCN: the paper's GNN baseline (Bo et al. 2020), specific to this recipe ----------------------
class SDCN(nn.Module):
    """SDCN: the AE's hidden states are mixed (σ = 0.5) into a 5-layer GCN whose softmax output Z is
    the prediction; loss = MSE + 0.1·KL(P‖Q) + 0.01·KL(P‖Z) (the authors' defaults)."""

    def __init__(self, ae: AutoEncoder, n_clusters: int, sigma: float = 0.5) -> None:
        super().__init__()
        self.ae, self.sigma = ae, sigma
        widths = [cast(MLP, ae.encoder).in_dim, *HIDDEN, LATENT]  # an MLP autoencoder (pretrain)
        self.gcn = nn.ModuleList(
            [GCNLayer(a, b, activation=i < len(widths) - 2) for i, (a, b) in enumerate(zip(widths[:-1], widths[1:]))]
        )
        self.out = GCNLayer(LATENT, n_clusters, activation=False)
        self.head = ClusterHead(n_clusters, LATENT)

    def hidden_states(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Outputs of each encoder layer after its activation, then the latent."""
        states, h = [], x
        layers = list(cast(MLP, self.ae.encoder).net)
        for i, m in enumerate(layers):
            h = m(h)
            if not isinstance(m, nn.Linear) and i < len(layers) - 1:
                states.append(h)
        states.append(self.ae.bottleneck(h).latent)
        return states

    def forward(self, x: torch.Tensor, a: torch.Tensor):
        hs = self.hidden_states(x)
        g = self.gcn[0](x, a)
        for layer, h in zip(self.gcn[1:], hs[:-1]):
            g = layer((1 - self.sigma) * g + self.sigma * h, a)
        z_pred = F.softmax(self.out((1 - self.sigma) * g + self.sigma * hs[-1], a), dim=1)
        return self.ae.decoder(hs[-1]), self.head(hs[-1]), z_pred


def _sdcn_epoch(model: SDCN, opt, x, a) -> tuple[float, np.ndarray]:
    recon, q, pred = model(x, a)
    p = target_distribution(q)
    loss = (
        F.mse_loss(recon, x)
        + 0.1 * F.kl_div(q.log(), p, reduction="batchmean")
        + 0.01 * F.kl_div(pred.log(), p, reduction="batchmean")
    )
    opt.zero_grad()
    loss.backward()
    opt.step()
    return loss.item(), pred.argmax(1).detach().numpy()


def _make_sdcn(data, seed: int, lr: float):
    X, y, A, ae, centers = data
    torch.manual_seed(seed)
    import copy

    model = SDCN(copy.deepcopy(ae), len(np.unique(y)))
    model.head.init_centers(torch.as_tensor(centers, dtype=torch.float32))
    a_hat = normalize_adjacency(A, kind="row").tocoo()  # sparse, as SDCN's own torch.spmm: a fair epoch time
    idx = torch.as_tensor(np.vstack([a_hat.row, a_hat.col]), dtype=torch.long)
    a = torch.sparse_coo_tensor(idx, a_hat.data, a_hat.shape, dtype=torch.float32).coalesce()
    return model, torch.optim.Adam(model.parameters(), lr=lr), torch.as_tensor(X), a


def run_sdcn(s: Settings, seed: int, data) -> Measured:
    y = data[1]
    model, opt, x, a = _make_sdcn(data, seed, s.sdcn_lr)
    history, change, prev = [], [], None
    for _ in range(s.epochs):
        _, labels = _sdcn_epoch(model, opt, x, a)
        history.append(nmi(y, labels))
        change.append(float((labels != prev).mean()) if prev is not None else 1.0)
        prev = labels
    model.eval()
    with torch.no_grad():
        final = model(x, a)[2].argmax(1).numpy()
    return Measured(
        metrics={**_scores(y, final), "nmi_max_over_epochs": max(history), "converged": _converged(change)},
        curves={"nmi": history},
    )


# ---- arms built from the library ---------------------------------------------------------------
def _clusterer(s: Settings, data, seed: int, **kw) -> DeepClusterer:
    X, y, A, ae, _ = data
    return DeepClusterer(
        n_clusters=len(np.unique(y)),
        latent_dim=LATENT,
        autoencoder=ae,
        pretrain_epochs=0,
        manifold=None,
        refine_epochs=s.epochs,
        refine_lr=s.lr,
        kl_weight=s.beta,
        graph_power=s.r,
        graph_tau=s.tau,
        random_state=seed,
        **kw,
    )


def _deep_arm(**kw):
    def arm(s: Settings, seed: int, data) -> Measured:
        X, y, A = data[0], data[1], data[2]
        dc = _clusterer(s, data, seed, **{k: (s.alpha if v == "alpha" else v) for k, v in kw.items()})
        dc.fit(X, adjacency=A if dc.graph_weight > 0 else None)
        per_epoch = statistics.median(dc.epoch_seconds_) if dc.epoch_seconds_ else 0.0
        history = [nmi(y, lab) for lab in dc.label_history_]
        out = {
            **_scores(y, dc.labels_),
            "nmi_max_over_epochs": max(history),
            "converged": _converged(dc.label_change_),
            "epoch_ms": 1000 * per_epoch,
        }
        if kw.get("graph_cumulative"):  # ours: the cost claim, timed side by side with SDCN in this process
            out["epoch_time_ratio_vs_sdcn"] = _time_ratio(dc, seed, data, s.sdcn_lr)
        return Measured(metrics=out, curves={"nmi": history, "loss": dc.refine_curve_})

    return arm


def _time_ratio(dc: DeepClusterer, seed: int, data, lr: float, epochs: int = 5) -> float:
    """Median SCGC* epoch (timed inside its fit) over the median SDCN epoch, in the same process (card G4)."""
    sd, opt, x, a = _make_sdcn(data, seed, lr)
    t_sdcn = []
    for _ in range(epochs):
        t0 = time.perf_counter()
        _sdcn_epoch(sd, opt, x, a)
        t_sdcn.append(time.perf_counter() - t0)
    return statistics.median(dc.epoch_seconds_) / statistics.median(t_sdcn)


def raw_kmeans(s: Settings, seed: int, data) -> dict[str, float]:
    from sklearn.cluster import KMeans

    X, y = data[0], data[1]
    return _scores(y, KMeans(len(np.unique(y)), n_init=20, random_state=seed).fit_predict(X))


def smoothed_kmeans(s: Settings, seed: int, data) -> dict[str, float]:
    """The referee's baseline: k-means on SGC-smoothed features Â²X (SVD to 64 dims); r = 2 is SGC's default."""
    from sklearn.cluster import KMeans
    from sklearn.decomposition import TruncatedSVD

    X, y, A = data[0], data[1], data[2]
    a = normalize_adjacency(A, kind="row")
    smooth = a @ (a @ X)
    k = min(64, smooth.shape[1] - 1)
    feats = TruncatedSVD(k, random_state=seed).fit_transform(smooth)
    return _scores(y, KMeans(len(np.unique(y)), n_init=20, random_state=seed).fit_predict(feats))


def ae_kmeans(s: Settings, seed: int, data) -> dict[str, float]:
    X, y, A, ae, _ = data
    ae.eval()
    with torch.no_grad():
        z = ae.encode(torch.as_tensor(X)).numpy()
    from sklearn.cluster import KMeans

    return _scores(y, KMeans(len(np.unique(y)), n_init=20, random_state=seed).fit_predict(z))


@register_recipe
class SCGC(Recipe):
    slug = "scgc"
    paper = Paper("SCGC : Self-Supervised Contrastive Graph Clustering", "2204.12656")
    claim = (
        "An MLP autoencoder with a Student-t cluster head trained with a neighbourhood-contrastive loss over "
        "adjacency powers (SCGC*, no decoder, no graph convolutions) clusters a graph better than the GNN deep "
        "clusterer SDCN, and faster per epoch."
    )
    Settings: TypeAlias = Settings
    modes = {
        "smoke": Settings(
            seeds=1,
            dataset="digits",
            n_subsample=200,
            pretrain_epochs=2,
            epochs=3,
            alpha=4.0,
            r=4,
            lr=1e-3,
            sdcn_lr=1e-3,
        ),
        "quick": Settings(
            seeds=3, dataset="digits", pretrain_epochs=150, epochs=100, alpha=4.0, r=4, lr=1e-3, sdcn_lr=1e-3
        ),
        "record": Settings(seeds=5, dataset="cora", scgc_arm=False),
        "full": Settings(seeds=10, dataset="cora"),
    }
    ours = "scgc_star"
    min_seeds = 5
    gates = (
        Gate(
            "beats SDCN",
            "nmi",
            "scgc_star",
            "sdcn",
            effect=0.03,
            headline=True,
            why="0.03 NMI exceeds the k-means restart spread on fixed features (<= 0.026), far below the paper's gain",
        ),
        Gate(
            "the graph matters",
            "nmi",
            "scgc_star",
            "idec",
            effect=0.05,
            why="IDEC is SCGC with alpha = 0: the contrastive graph term must add clearly",
        ),
        Gate(
            "no worse than smoothed k-means",
            "nmi",
            "scgc_star",
            "smoothed_kmeans",
            kind="non_inferiority",
            effect=0.02,
            why="a referee's training-free graph baseline (SGC features + k-means)",
        ),
        Gate(
            "faster per epoch than SDCN",
            "epoch_time_ratio_vs_sdcn",
            "scgc_star",
            0.7,
            direction="lower",
            why="the paper claims -55 % training time; ratio measured side by side in one process",
        ),
    )
    preconditions = (
        Precondition(
            "SCGC* converged",
            "scgc_star",
            "converged",
            ">=",
            1.0,
            over="every",
            why="< 1 % of labels change over the last 10 epochs",
        ),
        Precondition("SDCN converged", "sdcn", "converged", ">=", 1.0, over="every"),
        Precondition("IDEC converged", "idec", "converged", ">=", 1.0, over="every"),
    )

    changes = (
        "Before any judged run, a debug run of the smoke/quick settings showed the 30-epoch pretrained AE "
        "collapsing (AE + k-means NMI 0.12 on digits); AE pretraining became a matched ~1,100 Adam steps "
        "(100 epochs on Cora) before the first record run. Gates and preconditions were not changed.",
        "After the first record cell (seed 0 of SCGC*), SDCN's GCN was found to use a dense adjacency, which "
        "inflated its epoch time (time ratio 0.15); it now uses a sparse one as the authors' torch.spmm does, "
        "and the record run restarted from scratch (ratio 0.76 after the fix).",
        "After the first record result (inconclusive: AE + k-means NMI 0.154 < raw k-means 0.156, so the "
        "positive-control precondition failed): the Cora input was row-normalised (the card's wording), while "
        "SDCN/SCGC feed the binary bag-of-words (SDCN data/cite.txt, loaded unscaled by utils.load_data); "
        "dividing by ~18 words per node shrank the MSE signal. Pretraining now follows SDCN's data/pretrain.py "
        "(30 epochs, batch 256, Adam 1e-3) on binary features; a probe on 2 seeds (scratch script, not a "
        "recipe run) gave AE + k-means NMI 0.26/0.25 vs raw k-means 0.18/0.17. Widths stay 256-256-512 (card, "
        "CPU budget). Gates, thresholds, preconditions and arms unchanged; the record run restarted from scratch.",
        "During that rerun's first seed (timing under the shared load: ~4 min wall per refinement arm, which "
        "would not fit with the g-simclr rerun before the deadline), record dropped the SCGC-with-decoder arm "
        "as the card's budget rule says ('if over, drop SCGC, never seeds/epochs'); it is reported only, never "
        "gated. Its one finished cell and SCGC*'s seed-0 NMI had been seen; nothing gated was changed.",
    )

    def data(self, s: Settings, seed: int):
        X, y, A = load(s.dataset, s.knn, s.n_subsample, s.row_normalise)
        torch.manual_seed(seed)
        ae = AutoEncoder.mlp(in_dim=X.shape[1], latent_dim=LATENT, hidden=list(HIDDEN), activation="relu")
        Trainer(ae, TrainerConfig(epochs=s.pretrain_epochs, batch_size=256, lr=1e-3, seed=seed, progress=False)).fit(
            torch.as_tensor(X)
        )
        ae.eval()
        from sklearn.cluster import KMeans

        with torch.no_grad():
            z = ae.encode(torch.as_tensor(X)).numpy()
        centers = KMeans(len(np.unique(y)), n_init=20, random_state=seed).fit(z).cluster_centers_
        return X, y, A, ae, centers

    def arms(self, s: Settings):
        scgc = {"scgc": _deep_arm(refine="idec", recon_weight=1.0, graph_weight="alpha")} if s.scgc_arm else {}
        return {
            "scgc_star": _deep_arm(refine="dec", recon_weight=0.0, graph_weight="alpha", graph_cumulative=True),
            **scgc,
            "idec": _deep_arm(refine="idec", recon_weight=1.0, graph_weight=0.0),
            "sdcn": run_sdcn,
            "ae_kmeans": ae_kmeans,
            "smoothed_kmeans": smoothed_kmeans,
            "raw_kmeans": raw_kmeans,
        }

    def checks(self, s: Settings, cells: Mapping[str, Mapping[int, Measured]]) -> list[Check]:
        ae = np.mean([m.value("nmi") for m in cells["ae_kmeans"].values()])
        raw = np.mean([m.value("nmi") for m in cells["raw_kmeans"].values()])
        return [
            Check(
                "pretrained AE beats raw k-means",
                ae > raw,
                f"AE + k-means NMI {ae:.3f} vs raw k-means {raw:.3f}: the shared pretrained AE must be useful",
            )
        ]

    def describe(self, s: Settings) -> dict[str, Any]:
        X, y, A = load(s.dataset, s.knn, s.n_subsample, s.row_normalise)
        return {
            "data": f"{s.dataset}: {X.shape[0]} nodes x {X.shape[1]} "
            f"{'row-normalised' if s.row_normalise else 'binary'} features, {len(np.unique(y))} classes, "
            f"{A.nnz // 2} undirected edges" + ("" if s.dataset == "cora" else f" (k={s.knn} kNN graph)"),
            "widths": list(HIDDEN),
            "latent": LATENT,
            "deviations": [
                "widths 256-256-512 instead of 500-500-2000 in every arm (card)",
                "AE pretrained per seed with SDCN's data/pretrain.py recipe (30 epochs, batch 256, Adam 1e-3, "
                "MSE) instead of loading SDCN's one shared checkpoint",
                *([] if s.scgc_arm else ["SCGC with decoder (never gated) not run: the card's budget rule"]),
                "Cora features binary as SDCN's cite.txt (the authors' code), not row-normalised as the card said",
                "final-epoch metrics gated; nmi_max_over_epochs is the authors' label-peeking protocol, reported only",
            ],
        }

    def figures(self, s: Settings, cells, out_dir) -> list[str]:
        from isthmus.viz import pyplot, save_figure

        plt = pyplot()
        fig, ax = plt.subplots(figsize=(6, 3.6))
        colors = {"scgc_star": "tab:red", "scgc": "tab:orange", "idec": "tab:blue", "sdcn": "tab:green"}
        for arm, color in colors.items():
            for i, m in enumerate(cells.get(arm, {}).values()):
                ax.plot(m.curves["nmi"], color=color, alpha=0.6, label=arm if i == 0 else None)
        ax.set_xlabel("epoch"), ax.set_ylabel("NMI (argmax q)"), ax.legend(fontsize=7)
        ax.set_title(f"{s.dataset}: NMI during refinement (one line per seed)", fontsize=9)
        return [save_figure(fig, out_dir / "nmi_curves.png").name]

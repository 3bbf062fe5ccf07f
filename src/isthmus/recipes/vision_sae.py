"""Seed 25 — SAEs on a vision model's embeddings: OOD detection and recovery of the class ontology.

Olson, Hinck, Ratzlaff, Li et al. (Intel Labs), "Probing the Representational Power of Sparse
Autoencoders in Vision Models" (2025). Embedding-model part only (the diffusion and multimodal parts are
out of reach offline).

Vision model: a small CNN (``isthmus.nn.ConvEncoder`` → ReLU 64-d embedding → linear head) trained to
classify 9 in-distribution classes with a known 3-level ontology — MNIST t10k digits 0–4 (fallback: the
scikit-learn digits) and the four procedural shapes of ``make_shapes`` rendered at the same size:

    root ─┬─ digit ── 0 1 2 3 4
          └─ shape ─┬─ angular ── square triangle
                    └─ round ──── ellipse heart

A TopK SAE (expansion 8) is trained on the training embeddings. Checks, all on held-out images:

1. **OOD detection**, in-distribution test images vs digits 5–9 (never seen). Headline: k-NN (k=10) cosine
   distance to the training set in SAE-code space; baselines with the same score on the raw embedding and on
   a random (untrained) SAE's codes, plus max-softmax, raw Mahalanobis and SAE reconstruction error.
2. **Ontology**: class-mean codes → average-linkage tree (cosine) → Spearman correlation of its cophenetic
   distances with the ontology's tree distances over the 36 class pairs; and feature co-activation
   clustering (alive features, correlation distance, cut at 2) against each feature's dominant superclass
   (ARI). Baselines: raw embedding dimensions, PCA codes (same width as the embedding), random SAE.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from scipy.cluster.hierarchy import cophenet, fcluster, linkage
from scipy.spatial.distance import pdist
from scipy.stats import spearmanr
from sklearn.metrics import adjusted_rand_score

from isthmus.data import load_digits, load_mnist, make_shapes
from isthmus.data.paths import DataNotFoundError
from isthmus.interp.sae import SAEConfig, SAETrainConfig, SparseAutoEncoder, train_sae
from isthmus.metrics.anomaly import auroc
from isthmus.nn.conv import ConvEncoder
from isthmus.recipes.base import Paper, Recipe, Result, summarize
from isthmus.recipes.registry import register_recipe
from isthmus.viz import pyplot, save_figure

ID_DIGITS = (0, 1, 2, 3, 4)
SHAPE_NAMES = ("square", "triangle", "ellipse", "heart")
SHAPE_FAMILY = {"square": "angular", "triangle": "angular", "ellipse": "round", "heart": "round"}
CLASS_NAMES = [str(d) for d in ID_DIGITS] + list(SHAPE_NAMES)
MODE_SETTINGS: dict[str, dict[str, Any]] = {
    "smoke": dict(n_digits=600, n_shapes=300, epochs=1, sae_steps=50),
    "quick": dict(n_digits=5000, n_shapes=2000, epochs=6, sae_steps=600),
    "full": dict(n_digits=10000, n_shapes=6000, epochs=10, sae_steps=3000),
}
EMBED, EXPANSION, K, KNN = 64, 8, 8, 10
SHAPE_RADIUS = 0.4  # of the image side; at make_shapes' default 0.25 the 28-px shapes were 37-48 % separable


def ontology_distance() -> np.ndarray:
    """(9, 9) tree distance between the ID classes: 0 same, 1 same shape family, 2 same superclass, 3 else."""
    sup = ["digit"] * len(ID_DIGITS) + ["shape"] * len(SHAPE_NAMES)
    fam = [None] * len(ID_DIGITS) + [SHAPE_FAMILY[s] for s in SHAPE_NAMES]
    n = len(CLASS_NAMES)
    d = np.zeros((n, n))
    for i in range(n):
        for j in range(n):
            same_family = fam[i] is not None and fam[i] == fam[j]
            d[i, j] = 0 if i == j else (1 if same_family else (2 if sup[i] == sup[j] else 3))
    return d


def load_data(cfg: dict, seed: int) -> dict[str, Any]:
    """ID images (digits 0–4 + shapes, labels 0..8), OOD digits 5–9; a per-seed train/test split."""
    try:
        t = load_mnist()
        src = "mnist-t10k"
    except DataNotFoundError:
        t = load_digits(as_images=True)
        src = "sklearn-digits"
    x, y = torch.as_tensor(np.asarray(t.X), dtype=torch.float32), torch.as_tensor(np.asarray(t.y)).long()
    size = x.shape[-1]
    rng = np.random.default_rng(seed)
    idx = rng.permutation(len(x))[: cfg["n_digits"]]
    x, y = x[idx], y[idx]
    ood = y >= 5
    sh = make_shapes(n=cfg["n_shapes"], image_size=size, seed=seed, shapes=SHAPE_NAMES,
                     vary=["shape", "scale", "rotation", "x", "y"], scale_range=(0.7, 1.0),
                     max_radius=SHAPE_RADIUS)
    xs = torch.as_tensor(np.asarray(sh.X), dtype=torch.float32)
    ys = torch.as_tensor(np.asarray(sh.y)).long() + len(ID_DIGITS)
    x_id, y_id = torch.cat([x[~ood], xs]), torch.cat([y[~ood], ys])
    perm = torch.as_tensor(rng.permutation(len(x_id)))
    n_tr = int(0.7 * len(x_id))
    tr, te = perm[:n_tr], perm[n_tr:]
    return {"x_tr": x_id[tr], "y_tr": y_id[tr], "x_te": x_id[te], "y_te": y_id[te], "x_ood": x[ood],
            "size": size, "source": src}


class SmallCNN(torch.nn.Module):
    def __init__(self, size: int, n_classes: int) -> None:
        super().__init__()
        self.enc = ConvEncoder(in_channels=1, image_size=size, channels=[16, 32], out_dim=EMBED)
        self.head = torch.nn.Linear(EMBED, n_classes)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.enc(x))  # (B, 64) penultimate embedding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(x))


def train_cnn(d: dict, epochs: int, seed: int) -> SmallCNN:
    torch.manual_seed(seed)
    net = SmallCNN(d["size"], len(CLASS_NAMES))
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    g = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        for b in torch.randperm(len(d["x_tr"]), generator=g).split(64):
            loss = torch.nn.functional.cross_entropy(net(d["x_tr"][b]), d["y_tr"][b])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return net.eval()


def knn_score(train: torch.Tensor, query: torch.Tensor, k: int = KNN) -> np.ndarray:
    """Mean cosine distance to the k nearest training rows (higher = more OOD)."""
    a = torch.nn.functional.normalize(train, dim=1)
    q = torch.nn.functional.normalize(query, dim=1)
    sim = q @ a.T
    return (1 - sim.topk(min(k, len(a)), dim=1).values.mean(1)).numpy()


def mahalanobis(train: np.ndarray, y: np.ndarray, query: np.ndarray) -> np.ndarray:
    """Min over classes of the Mahalanobis distance with a shared (ridge-regularised) covariance."""
    means = np.stack([train[y == c].mean(0) for c in np.unique(y)])
    cov = np.cov((train - means[np.searchsorted(np.unique(y), y)]).T) + 1e-3 * np.eye(train.shape[1])
    prec = np.linalg.inv(cov)
    diff = query[:, None, :] - means[None]
    return np.einsum("ncd,de,nce->nc", diff, prec, diff).min(1)


def ontology_scores(codes: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Class-tree Spearman vs ontology, superclass ARI of the 2-cut, and feature co-activation ARI."""
    means = np.stack([codes[y == c].mean(0) for c in range(len(CLASS_NAMES))])
    tree = linkage(means, "average", metric="cosine")
    coph = cophenet(tree)
    truth = ontology_distance()[np.triu_indices(len(CLASS_NAMES), 1)]
    sup = np.array([0] * len(ID_DIGITS) + [1] * len(SHAPE_NAMES))
    out = {"ontology_spearman": float(spearmanr(coph, truth).statistic),
           "superclass_ari": float(adjusted_rand_score(sup, fcluster(tree, 2, "maxclust")))}
    alive = (codes > 0).mean(0) > 0.005
    f = codes[:, alive]
    if f.shape[1] >= 3:
        feat_sup = (f[y >= len(ID_DIGITS)].mean(0) > f[y < len(ID_DIGITS)].mean(0)).astype(int)
        dist = np.nan_to_num(pdist(f.T, "correlation"), nan=1.0)
        clusters = fcluster(linkage(dist, "average"), 2, "maxclust")
        out["coactivation_ari"] = float(adjusted_rand_score(feat_sup, clusters))
    else:
        out["coactivation_ari"] = float("nan")
    return out


def _sae(seed: int) -> SparseAutoEncoder:
    torch.manual_seed(seed)
    return SparseAutoEncoder(SAEConfig(d_in=EMBED, d_sae=EXPANSION * EMBED, bottleneck="sae_topk",
                                       bottleneck_config={"k": K}, aux_k=32))


def run_seed(cfg: dict, seed: int) -> dict[str, dict[str, float]]:
    d = load_data(cfg, seed)
    net = train_cnn(d, cfg["epochs"], seed)
    with torch.no_grad():
        e_tr, e_te, e_ood = (net.embed(d[k]) for k in ("x_tr", "x_te", "x_ood"))
        acc = float((net.head(e_te).argmax(1) == d["y_te"]).float().mean())
        msp = torch.cat([net.head(e_te), net.head(e_ood)]).softmax(1).max(1).values.numpy()
    lab = np.r_[np.zeros(len(e_te)), np.ones(len(e_ood))]
    sae = _sae(seed)
    train_sae(sae, e_tr, SAETrainConfig(steps=cfg["sae_steps"], batch_size=256, lr=2e-3, seed=seed))
    rnd = _sae(seed + 1000)
    rnd.init_b_dec_(e_tr)
    res: dict[str, dict[str, float]] = {}
    for name, s in (("sae", sae), ("random_sae", rnd)):
        with torch.no_grad():
            c_tr, c_q = s.encode(e_tr), s.encode(torch.cat([e_te, e_ood]))
            err = (s.decode(c_q) - torch.cat([e_te, e_ood])).pow(2).sum(1).numpy()
            c_te = s.encode(e_te).numpy()
        res[name] = {"ood_auroc_knn": auroc(lab, knn_score(c_tr, c_q)), "ood_auroc_recon": auroc(lab, err),
                     **ontology_scores(c_te, d["y_te"].numpy()),
                     "l0": float((c_q > 0).sum(1).float().mean())}
    with torch.no_grad():
        c_te = sae.encode(e_te)
        res["sae"]["fvu"] = float((sae.decode(c_te) - e_te).pow(2).sum() / (e_te - e_te.mean(0)).pow(2).sum())
    q = torch.cat([e_te, e_ood])
    res["raw_embedding"] = {"ood_auroc_knn": auroc(lab, knn_score(e_tr, q)),
                            "ood_auroc_mahalanobis": auroc(lab, mahalanobis(e_tr.numpy(), d["y_tr"].numpy(),
                                                                            q.numpy())),
                            "ood_auroc_msp": auroc(lab, -msp), **ontology_scores(e_te.numpy(), d["y_te"].numpy()),
                            "cnn_test_accuracy": acc}
    mu = e_tr.mean(0)
    _, _, v = torch.linalg.svd(e_tr - mu, full_matrices=False)
    pca = lambda e: (e - mu) @ v.T  # noqa: E731  all components: a rotation of the embedding
    res["pca"] = {"ood_auroc_knn": auroc(lab, knn_score(pca(e_tr), pca(q))),
                  **ontology_scores(torch.relu(pca(e_te)).numpy(), d["y_te"].numpy())}
    res["_meta"] = {"source": d["source"], "n_train": len(e_tr), "n_test": len(e_te), "n_ood": len(e_ood)}
    return res


def verdict(m: dict[str, float], raw: dict[str, float], rnd: dict[str, float]) -> tuple[str, str]:
    """Seed means of the SAE, raw-embedding and random-SAE arms. See ``VisionSAE.verdict_rule``."""
    ood = m["ood_auroc_knn"] - max(raw["ood_auroc_knn"], rnd["ood_auroc_knn"])
    ont = m["ontology_spearman"] - max(raw["ontology_spearman"], rnd["ontology_spearman"])
    why = (f"OOD AUROC (k-NN) SAE {m['ood_auroc_knn']:.3f} vs raw {raw['ood_auroc_knn']:.3f} / random SAE "
           f"{rnd['ood_auroc_knn']:.3f} (margin {ood:+.3f}); ontology Spearman SAE {m['ontology_spearman']:.3f} vs "
           f"raw {raw['ontology_spearman']:.3f} / random SAE {rnd['ontology_spearman']:.3f} (margin {ont:+.3f}); "
           "a win needs a margin >= +0.01, a tie is within ±0.01")
    wins = int(ood >= 0.01) + int(ont >= 0.01)
    ties = int(abs(ood) < 0.01) + int(abs(ont) < 0.01)
    if wins == 2:
        return "reproduced", why
    if wins + ties == 2:  # one win and one tie, or two ties
        return "partial", why
    return "not reproduced", why


@register_recipe
class VisionSAE(Recipe):
    slug = "vision-sae"
    paper = Paper("Probing the Representational Power of Sparse Autoencoders in Vision Models", "")
    claim = ("SAE features of a vision model's embeddings are semantically meaningful: they improve "
             "out-of-distribution detection over the raw embedding and recover the ontological (hierarchical) "
             "structure of the classes.")
    verdict_rule = (
        "Compare seed means of the trained SAE against the best of the raw embedding and a random (untrained) "
        "SAE, on (1) OOD AUROC with the same k-NN cosine score (ID test vs unseen digits 5-9) and (2) Spearman "
        "correlation of the class-mean tree with the known ontology. A win is a margin >= +0.01, a tie within "
        "±0.01. 'reproduced': both win; 'partial': one wins and the other ties, or both tie; "
        "otherwise 'not reproduced'.")

    def run(self, mode: str, seeds: Sequence[int], out_dir: Path) -> Result:
        cfg = MODE_SETTINGS[mode]
        per: dict[str, dict[str, list[float]]] = {}
        meta = None
        for s in seeds:
            r = run_seed(cfg, s)
            meta = r.pop("_meta")
            for arm, vals in r.items():
                for k, v in vals.items():
                    per.setdefault(arm, {}).setdefault(k, []).append(v)
        summ = {a: {k: summarize(v) for k, v in m.items()} for a, m in per.items()}
        means = {a: {k: s.mean for k, s in m.items()} for a, m in summ.items()}
        v, why = verdict(means["sae"], means["raw_embedding"], means["random_sae"])
        figures = [self._plot(means, out_dir)]
        notes = [f"data: {meta['source']} digits 0-4 + 4 procedural shapes (ID, {meta['n_train']} train / "
                 f"{meta['n_test']} test), OOD = {meta['n_ood']} digits 5-9; each seed redraws data, CNN and SAE",
                 "the ontology has only 9 classes (36 pairs), so the Spearman numbers are coarse",
                 "an earlier quick run with a 3-epoch CNN (test accuracy 0.71) gave: OOD AUROC k-NN SAE 0.862 vs raw "
                 "0.863 / random SAE 0.840, ontology Spearman SAE 0.863 vs raw 0.687 / random 0.629 -> 'partial'; "
                 "a 6-epoch CNN with make_shapes' default radius 0.25 reached 0.725 (digits 0.92-1.0, shapes 0.37-0.48) "
                 "and gave OOD k-NN SAE 0.917 vs raw 0.912 / random 0.877 / PCA 0.929, ontology Spearman SAE 0.951 vs "
                 "raw 0.687 / random 0.621 -> 'partial'; quick now trains 6 epochs on larger shapes (radius 0.4)"]
        for key in ("ood_auroc_knn", "ontology_spearman"):
            best = max(("raw_embedding", "pca", "random_sae"), key=lambda a: means[a][key])
            if means[best][key] > means["sae"][key]:
                extra = "; the verdict rule compares with raw and random SAE only" if best == "pca" else ""
                notes.append(f"{key}: baseline '{best}' ({means[best][key]:.3f}) beats the SAE "
                             f"({means['sae'][key]:.3f}){extra}")
        notes.append(f"CNN test accuracy on the 9 ID classes {means['raw_embedding']['cnn_test_accuracy']:.3f}")
        config = {"mode": mode, **cfg, "embed": EMBED, "expansion": EXPANSION, "k": K, "knn": KNN, "shape_radius": SHAPE_RADIUS,
                  "classes": CLASS_NAMES, "shape_family": SHAPE_FAMILY}
        return Result(recipe=self.slug, paper=self.paper, claim=self.claim, mode=mode, seeds=list(seeds),
                      metrics=summ["sae"], baselines={a: summ[a] for a in ("raw_embedding", "random_sae", "pca")},
                      verdict=v, verdict_reason=why, config=config, figures=figures, notes=notes)

    @staticmethod
    def _plot(means: dict[str, dict[str, float]], out_dir: Path) -> str:
        plt = pyplot()

        arms = ["sae", "raw_embedding", "pca", "random_sae"]
        fig, axes = plt.subplots(1, 2, figsize=(8, 3.2))
        for ax, key, title in ((axes[0], "ood_auroc_knn", "OOD AUROC (k-NN), digits 5-9"),
                               (axes[1], "ontology_spearman", "class tree vs ontology (Spearman)")):
            ax.bar(arms, [means[a].get(key, np.nan) for a in arms], color=["C0", "C1", "C2", "C7"])
            ax.set_title(title, fontsize=9)
            ax.tick_params(axis="x", labelsize=8, rotation=20)
        save_figure(fig, out_dir / "vision_sae.png", dpi=110)
        return "vision_sae.png"

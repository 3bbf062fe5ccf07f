"""Graph utilities, contrastive losses, the DEC head, DeepClusterer and Reducer."""

import math

import numpy as np
import pytest
import scipy.sparse as sp
import torch
import torch.nn.functional as F

from isthmus.data.graphs import adjacency_power, edges_to_adjacency, knn_graph, normalize_adjacency, rewire_edges
from isthmus.nn.cluster_head import ClusterHead, target_distribution
from isthmus.nn.contrastive import neighbour_contrastive, nt_xent


def path_graph(n=4):
    return edges_to_adjacency(np.array([[i, i + 1] for i in range(n - 1)]).T, n)


def test_knn_graph_is_symmetric_without_self_loops():
    X = np.array([[0.0], [1.0], [1.1], [5.0], [5.2]])
    A = knn_graph(X, k=1).toarray()
    assert (A == A.T).all() and np.diag(A).sum() == 0
    assert A[1, 2] == 1 and A[3, 4] == 1 and A[0, 1] == 1 and A[0, 3] == 0
    with pytest.raises(ValueError, match="k must be"):
        knn_graph(X, k=5)


def test_row_normalised_adjacency_with_self_loops_and_powers():
    A = path_graph(3)  # 0-1-2
    a_hat = normalize_adjacency(A).toarray()
    np.testing.assert_allclose(a_hat, [[0.5, 0.5, 0], [1 / 3, 1 / 3, 1 / 3], [0, 0.5, 0.5]])
    two = adjacency_power(a_hat, 2)
    np.testing.assert_allclose(two, a_hat @ a_hat)
    np.testing.assert_allclose(adjacency_power(a_hat, 2, cumulative=True), a_hat + a_hat @ a_hat)
    np.testing.assert_allclose(two.sum(1), 1.0)  # powers of a row-stochastic matrix stay row-stochastic
    sym = normalize_adjacency(A, kind="sym").toarray()
    np.testing.assert_allclose(sym, sym.T)


def test_rewire_keeps_the_edge_count_and_moves_the_asked_fraction():
    A = knn_graph(np.random.default_rng(0).normal(size=(60, 3)), k=3)
    B = rewire_edges(A, 0.3, seed=1)
    m = sp.triu(A, 1).nnz
    assert sp.triu(B, 1).nnz == m
    kept = sp.triu(A.multiply(B), 1).nnz
    assert kept == m - round(0.3 * m)


def test_nt_xent_hand_computed_two_items():
    z1 = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    z2 = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    tau = 0.5
    # view 0: positive sim 1, negatives: view 1 (sim 0), view 3 (sim 0)
    expected = -math.log(math.exp(1 / tau) / (math.exp(1 / tau) + 2 * math.exp(0)))
    assert nt_xent(z1, z2, tau).item() == pytest.approx(expected, rel=1e-6)
    # masking item 1 out of item 0's negatives (and vice versa) leaves only the positive
    mask = torch.tensor([[True, False], [False, True]])
    assert nt_xent(z1, z2, tau, negative_mask=mask).item() == pytest.approx(0.0, abs=1e-6)


def test_nt_xent_matches_an_independent_formula():
    g = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(5, 3, generator=g), torch.randn(5, 3, generator=g)
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    s = torch.exp(z @ z.T / 0.2)
    losses = []
    for i in range(10):
        j = (i + 5) % 10
        losses.append(-torch.log(s[i, j] / (s[i].sum() - s[i, i])))
    assert nt_xent(z1, z2, 0.2).item() == pytest.approx(torch.stack(losses).mean().item(), rel=1e-5)


def test_neighbour_contrastive_hand_computed():
    z = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    A = torch.tensor([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    e = math.e
    # S (diag zeroed): S01 = 1, S02 = S12 = 0; rows: exp -> [1, e, 1], [e, 1, 1], [1, 1, 1]
    l0 = -math.log(e / (2 + e) + 1e-8)
    l1 = l0
    l2 = -math.log(1 / 3 + 1e-8)
    assert neighbour_contrastive(z, A, tau=1.0).item() == pytest.approx((l0 + l1 + l2) / 3, rel=1e-6)


def test_cluster_head_rows_sum_to_one_and_target_is_sharper():
    head = ClusterHead(3, 2)
    head.init_centers(torch.tensor([[0.0, 0.0], [3.0, 0.0], [0.0, 3.0]]))
    z = torch.tensor([[0.2, 0.1], [2.5, 0.3], [0.1, 2.0], [1.0, 1.0]])
    q = head(z)
    torch.testing.assert_close(q.sum(1), torch.ones(4))
    assert q.argmax(1).tolist()[:3] == [0, 1, 2]
    p = target_distribution(q)
    torch.testing.assert_close(p.sum(1), torch.ones(4))
    assert (p.max(1).values[:3] > q.max(1).values[:3]).all()  # confident rows get more confident
    # Student-t with v = 1: q ∝ 1 / (1 + d²)
    d2 = torch.cdist(z, head.centers).pow(2)
    ref = 1 / (1 + d2)
    torch.testing.assert_close(q, ref / ref.sum(1, keepdim=True))


def blobs(n=240, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(0, 6, size=(3, 8))
    y = np.repeat(np.arange(3), n // 3)
    return (centers[y] + rng.normal(size=(n, 8))).astype(np.float32), y


def test_deep_clusterer_finds_separated_blobs_and_predicts_new_rows():
    from isthmus.metrics.clustering import nmi
    from isthmus.tasks.deep_clusterer import DeepClusterer

    X, y = blobs()
    dc = DeepClusterer(n_clusters=3, hidden=(32,), latent_dim=4, pretrain_epochs=15, batch_size=32, random_state=0)
    labels = dc.fit_predict(X)
    assert nmi(y, labels) > 0.95
    np.testing.assert_array_equal(dc.predict(X), labels)
    assert dc.transform(X).shape == (240, 4)
    spectral = DeepClusterer(n_clusters=3, hidden=(32,), latent_dim=4, pretrain_epochs=15, batch_size=32,
                             manifold="spectral", random_state=0).fit(X)
    # the spectral option: new rows vote by their latent neighbours' labels
    assert (spectral.predict(X) == spectral.labels_).mean() > 0.95
    with pytest.raises(ValueError, match="manifold step"):
        DeepClusterer(refine="idec", manifold="spectral", pretrain_epochs=0).fit(X)


def test_deep_clusterer_chooses_k_and_refines():
    from isthmus.metrics.clustering import nmi
    from isthmus.tasks.deep_clusterer import DeepClusterer

    X, y = blobs()
    dc = DeepClusterer(n_clusters=None, k_range=(2, 5), hidden=(32,), latent_dim=4, pretrain_epochs=15,
                       batch_size=32, refine="idec", refine_epochs=20, manifold=None, random_state=0)
    dc.fit(X)
    assert dc.n_clusters_ == 3 and set(dc.k_scores_) == {2, 3, 4, 5}
    assert nmi(y, dc.labels_) > 0.95 and len(dc.refine_curve_) == 20
    with pytest.raises(ValueError, match="adjacency"):
        DeepClusterer(graph_weight=1.0, pretrain_epochs=0).fit(X)
    with pytest.raises(ValueError, match="n_clusters"):
        DeepClusterer(n_clusters=0).fit(X)


def test_reducer_round_trips_like_pca_on_a_linear_subspace():
    from isthmus.tasks.reduce import Reducer

    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 2)) @ rng.normal(size=(2, 6)) + 3.0  # rank 2, offset
    r = Reducer(n_components=2, hidden=(32,), epochs=60, random_state=0).fit(X)
    Z = r.transform(X)
    back = r.inverse_transform(Z)
    assert Z.shape == (300, 2)
    rel = np.mean((back - X) ** 2) / X.var()
    assert rel < 0.02  # a 2-D code reconstructs rank-2 data almost exactly, in original units
    with pytest.raises(ValueError, match="features"):
        r.transform(X[:, :3])



from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

from isthmus.tasks.deep_clusterer import DeepClusterer  # noqa: E402
from isthmus.tasks.reduce import Reducer  # noqa: E402


@parametrize_with_checks([
    DeepClusterer(n_clusters=3, hidden=(8,), latent_dim=2, pretrain_epochs=1, n_init=2, batch_size=16, manifold=None, random_state=0),
    Reducer(n_components=2, hidden=(8,), epochs=1, batch_size=16, random_state=0),
])
def test_scikit_learn_estimator_checks(estimator, check):
    check(estimator)

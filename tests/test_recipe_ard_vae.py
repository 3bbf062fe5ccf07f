"""Recipe ard-vae (seed 7): data, the τ² stability measure and the per-epoch fresh τ² draw (smoke: test_recipes_smoke)."""


from isthmus.recipes.ard_vae import _arm_metrics, shapes_data, tau_share_drift, train_vae


def test_data_has_k_varying_factors():
    x = shapes_data(2, 0, 50)
    assert x.shape == (50, 256) and 0.0 <= float(x.min()) and float(x.max()) <= 1.0


def test_tau_share_drift():
    settled = [[1.0, 0.5, 0.01]] * 10
    assert tau_share_drift(settled) == 0.0
    moving = [[1.0, 0.5 - 0.04 * i, 0.01] for i in range(10)]
    assert tau_share_drift(moving) > 0.05
    assert tau_share_drift(settled[:3]) == 1.0  # too short to tell: never "settled"


def test_arm_metrics():
    counts = {(2, 8): 2.0, (2, 16): 3.0, (4, 8): 4.0, (4, 16): 1.0}
    m = _arm_metrics(counts, (2, 4), (8, 16))
    assert m["dim_abs_error"] == 1.0 and m["exact_rate"] == 0.5 and m["latent_size_spread"] == 3.0


def test_ard_prior_is_redrawn_every_epoch():
    x = shapes_data(2, 0, 120)
    model, trace = train_vae(x[:80], x[80:], 4, 0, epochs=3, ard=True, tau_subset=0.5)
    assert len(trace) == 3 and all(len(t) == 4 for t in trace)
    assert trace[0] != trace[1] != trace[2]  # re-estimated after every epoch
    _, none = train_vae(x[:80], x[80:], 4, 0, epochs=1, ard=False)
    assert none == []

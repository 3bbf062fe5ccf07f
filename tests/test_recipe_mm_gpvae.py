"""Recipe mm-gpvae (seed 8): arms share the posterior family and report what the gates read
(smoke: tests/test_recipes_smoke.py)."""

from isthmus.recipes.mm_gpvae import ARMS, MMGPVAE


def test_fourier_and_time_arms_share_the_posterior_family():
    assert ARMS["mmgpvae"]["gp_domain"] == "fourier" and ARMS["mm_time"]["gp_domain"] == "time_exact"
    assert ARMS["mm_time"]["modalities"] == ARMS["mmgpvae"]["modalities"] == "both"


def test_shared_latent_gates_compare_the_same_latent_set():
    for g in MMGPVAE.gates:
        if g.metric.startswith("r2_shared"):
            assert g.metric == "r2_shared"  # all latents on both sides, never a block against everything

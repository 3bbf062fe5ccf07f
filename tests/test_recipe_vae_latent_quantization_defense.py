"""Recipe vae-latent-quantization-defense (seed 35): the purifier pipeline and the adaptive attack.
(The shared parametrized smoke test runs the recipe end to end.)"""

import torch

from isthmus.recipes.vae_latent_quantization_defense import (
    FILTERS,
    Settings,
    train_filter,
)
from isthmus.tasks.adversarial import Purified, pgd


def test_quantized_filter_outputs_a_finite_set_of_images_and_passes_gradients():
    torch.manual_seed(0)
    x = torch.rand(64, 16)
    s = Settings(hidden=[16], latent=2, ae_epochs=1)
    ae, loss = train_filter("qvae", x, 0, s)
    assert len(loss) == 1 and "quantized_gaussian" == FILTERS["qvae"]["bottleneck"]
    with torch.no_grad():
        z = ae.bottleneck.eval()(ae.encoder(x)).latent
    assert torch.allclose(z / 0.5, (z / 0.5).round(), atol=1e-5)  # on the Δ = 0.5 grid at evaluation
    clf = torch.nn.Linear(16, 3)
    f = Purified(ae, clf)
    adv = pgd(f, x[:8], torch.zeros(8, dtype=torch.long), 0.1, steps=2)  # BPDA: the STE lets gradients through
    assert (adv - x[:8]).abs().max() > 0 and (adv - x[:8]).abs().max() <= 0.1 + 1e-6

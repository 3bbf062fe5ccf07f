"""The representation autoencoder: the frozen encoder gets no gradients, the normaliser round-trips,
noise augmentation only in training."""

import torch
from torch import nn

from isthmus.models.representation import RepresentationAutoencoder


class Enc(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 6)
        self.drop = nn.Dropout(0.5)

    def forward(self, x):
        return self.drop(self.lin(x.reshape(len(x), 3, 4)))  # (B, 3 tokens, 6)


def make(tau=0.8):
    torch.manual_seed(0)
    return RepresentationAutoencoder(Enc(), nn.Linear(18, 12), tokens=3, token_dim=6, noise_tau=tau)


def test_frozen_encoder_gets_no_gradient_and_stays_in_eval():
    rae = make().train()
    assert not rae.encoder.training and rae.decoder.training
    before = {k: v.clone() for k, v in rae.encoder.state_dict().items()}
    opt = torch.optim.SGD([p for p in rae.parameters() if p.requires_grad], lr=0.1)
    x = torch.randn(8, 12)
    rae.compute_loss(x).loss.backward()
    assert all(p.grad is None for p in rae.encoder.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in rae.decoder.parameters())
    opt.step()
    assert all(torch.equal(before[k], v) for k, v in rae.encoder.state_dict().items())


def test_normaliser_round_trips_and_standardises():
    rae = make()
    x = torch.randn(200, 12) * 3 + 1
    rae.fit_normaliser(x)
    z = rae.encode(x)
    assert z.shape == (200, 18)
    flat = z.reshape(-1, 6)
    torch.testing.assert_close(flat.mean(0), torch.zeros(6), atol=1e-5, rtol=0)
    torch.testing.assert_close(flat.std(0), torch.ones(6), atol=1e-4, rtol=0)
    torch.testing.assert_close(rae.denormalise(z), rae.encoder(x), atol=1e-5, rtol=1e-5)


def test_noise_only_in_training():
    rae = make(tau=0.8).eval()
    x = torch.randn(4, 12)
    assert torch.equal(rae.compute_loss(x).loss, rae.compute_loss(x).loss)
    rae.train()
    torch.manual_seed(1)
    a = rae.compute_loss(x).loss
    torch.manual_seed(2)
    assert not torch.equal(a, rae.compute_loss(x).loss)

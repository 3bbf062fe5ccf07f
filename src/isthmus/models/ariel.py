"""Recurrent sequence models for AriEL (seed 31): a GRU language model and a GRU sequence AE / VAE.

* :class:`GRULanguageModel` — next-token LM; :meth:`~GRULanguageModel.as_step_lm` gives the float64
  step interface that :class:`isthmus.bottlenecks.ariel.ArithmeticVolumeCoder` (and plain ancestral
  sampling, :func:`sample_lm`) use.
* :class:`GRUSeqAutoencoder` — a GRU encoder to a ``latent_dim`` code and a GRU decoder initialised from it;
  ``variational=True`` makes it the Bowman et al. (arXiv 1511.06349) sentence VAE: Gaussian posterior, KL
  annealed linearly from 0 to 1 over ``kl_anneal_steps`` and word dropout on the decoder inputs.
* :func:`fit_sequence_model` — a small Adam loop shared by both (sequences are short; no Trainer callbacks needed).

Token conventions (:data:`SPECIAL`): 0 PAD, 1 BOS, 2 EOS, 3 UNK (word-dropout replacement); words start at 4.
The LM never gives probability to PAD, BOS or UNK.
"""

from __future__ import annotations

import copy
from typing import Sequence, cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "PAD",
    "BOS",
    "EOS",
    "UNK",
    "SPECIAL",
    "pad_batch",
    "GRULanguageModel",
    "GRUSeqAutoencoder",
    "fit_sequence_model",
    "sample_lm",
]

PAD, BOS, EOS, UNK = 0, 1, 2, 3
SPECIAL = 4


def pad_batch(sentences: Sequence[Sequence[int]], max_len: int | None = None) -> torch.Tensor:
    """``(n, T)`` long tensor of ``sentence + [EOS]`` padded with PAD; T = longest + 1 (or ``max_len + 1``)."""
    T = (max_len if max_len is not None else max(len(s) for s in sentences)) + 1
    out = torch.full((len(sentences), T), PAD, dtype=torch.long)
    for i, s in enumerate(sentences):
        out[i, : len(s) + 1] = torch.tensor(list(s) + [EOS])
    return out


def _shift_right(y: torch.Tensor) -> torch.Tensor:
    """Decoder inputs: BOS then the targets without their last position."""
    return torch.cat([torch.full_like(y[:, :1], BOS), y[:, :-1]], dim=1)


class GRULanguageModel(nn.Module):
    def __init__(self, vocab_size: int, emb: int = 32, hidden: int = 128) -> None:
        super().__init__()
        self.vocab_size = vocab_size
        self.emb = nn.Embedding(vocab_size, emb)
        self.gru = nn.GRU(emb, hidden, batch_first=True)
        self.head = nn.Linear(hidden, vocab_size)
        mask = torch.zeros(vocab_size)
        mask[[PAD, BOS, UNK]] = float("-inf")
        self.register_buffer("logit_mask", mask, persistent=False)

    def forward(self, x: torch.Tensor, h: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        out, h = self.gru(self.emb(x), h)  # (B, T, H)
        return self.head(out) + self.logit_mask, h  # (B, T, V)

    def loss(self, y: torch.Tensor, step: int = 0) -> dict[str, torch.Tensor]:
        logits, _ = self(_shift_right(y))
        return {"ce": F.cross_entropy(logits.transpose(1, 2), y, ignore_index=PAD)}

    @torch.no_grad()
    def log_prob(self, sentences: Sequence[Sequence[int]]) -> np.ndarray:
        """log p(sentence + EOS) for each sentence."""
        y = pad_batch(sentences)
        logp = F.log_softmax(self(_shift_right(y))[0].double(), -1).gather(2, y[..., None])[..., 0]
        return logp.masked_fill(y == PAD, 0.0).sum(1).numpy()

    def as_step_lm(self) -> "_StepAdapter":
        """A float64 copy with the ``start``/``step`` interface of :class:`isthmus.bottlenecks.ariel.StepLM`."""
        return _StepAdapter(self)


class _StepAdapter:
    """Runs the LM one token at a time in float64 (so encode and decode see the same probabilities)."""

    def __init__(self, lm: GRULanguageModel) -> None:
        self.lm = copy.deepcopy(lm).double().eval()
        self.vocab_size = lm.vocab_size

    def start(self, n: int) -> tuple[int, torch.Tensor | None]:
        return n, None

    @torch.no_grad()
    def step(self, state, prev):
        n, h = state
        x = torch.full((n, 1), BOS, dtype=torch.long) if prev is None else torch.as_tensor(np.asarray(prev))[:, None]
        logits, h = self.lm(x, h)
        return F.softmax(logits[:, -1], -1).numpy(), (n, h)


@torch.no_grad()
def sample_lm(lm: GRULanguageModel, n: int, max_len: int, generator: torch.Generator) -> list[list[int]]:
    """Ancestral sampling (temperature 1) of ``n`` sentences, stopping at EOS or ``max_len`` tokens."""
    step_lm = lm.as_step_lm()
    state, prev = step_lm.start(n), None
    out: list[list[int]] = [[] for _ in range(n)]
    done = np.zeros(n, dtype=bool)
    for _ in range(max_len):
        probs, state = step_lm.step(state, prev)
        k = torch.multinomial(torch.as_tensor(probs), 1, generator=generator)[:, 0].numpy()
        for i in np.flatnonzero(~done):
            if k[i] == EOS:
                done[i] = True
            else:
                out[i].append(int(k[i]))
        if done.all():
            break
        prev = np.where(done, EOS, k)
    return out


class GRUSeqAutoencoder(nn.Module):
    """GRU encoder → ``latent_dim`` code (Gaussian posterior when ``variational``) → GRU decoder whose initial
    state comes from the code and which also sees the code next to each input token. ``free_bits`` > 0 floors
    each latent dimension's batch-mean KL at that many nats (Kingma et al., arXiv 1606.04934) against collapse."""

    def __init__(
        self,
        vocab_size: int,
        latent_dim: int = 16,
        emb: int = 32,
        hidden: int = 128,
        variational: bool = False,
        word_dropout: float = 0.0,
        kl_anneal_steps: int = 1000,
        free_bits: float = 0.0,
    ) -> None:
        super().__init__()
        self.vocab_size, self.latent_dim, self.variational = vocab_size, latent_dim, variational
        self.word_dropout, self.kl_anneal_steps, self.free_bits = word_dropout, kl_anneal_steps, free_bits
        self.emb = nn.Embedding(vocab_size, emb, padding_idx=PAD)
        self.enc = nn.GRU(emb, hidden, batch_first=True)
        self.to_z = nn.Linear(hidden, 2 * latent_dim if variational else latent_dim)
        self.from_z = nn.Linear(latent_dim, hidden)
        self.dec = nn.GRU(emb + latent_dim, hidden, batch_first=True)  # z is also fed at every step
        self.head = nn.Linear(hidden, vocab_size)

    def posterior(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(mean, logvar or None) of the code of padded targets ``y`` ``(B, T)``."""
        lengths = (y != PAD).sum(1).clamp(min=1)
        packed = nn.utils.rnn.pack_padded_sequence(self.emb(y), lengths.cpu(), batch_first=True, enforce_sorted=False)
        _, h = self.enc(packed)  # (1, B, H)
        out = self.to_z(h[0])
        return (out.chunk(2, -1)[0], out.chunk(2, -1)[1]) if self.variational else (out, None)

    def _step_inputs(self, z: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        e = self.emb(tokens)  # (B, T, E)
        return torch.cat([e, z[:, None].expand(-1, e.shape[1], -1)], -1)  # (B, T, E + Z)

    def _logits(self, z: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
        h0 = torch.tanh(self.from_z(z))[None]  # (1, B, H)
        out, _ = self.dec(self._step_inputs(z, inputs), h0)
        return self.head(out)  # (B, T, V)

    def loss(self, y: torch.Tensor, step: int = 0) -> dict[str, torch.Tensor]:
        mu, logvar = self.posterior(y)
        z = mu if logvar is None else mu + torch.randn_like(mu) * (0.5 * logvar).exp()
        inputs = _shift_right(y)
        if self.training and self.word_dropout > 0:
            drop = (torch.rand(inputs.shape) < self.word_dropout) & (inputs > EOS)
            inputs = inputs.masked_fill(drop, UNK)
        logits = self._logits(z, inputs)
        n_tok = (y != PAD).sum(1).float()
        ce = (F.cross_entropy(logits.transpose(1, 2), y, ignore_index=PAD, reduction="none").sum(1)).mean()
        out = {"ce": ce / n_tok.mean()}
        if logvar is not None:
            kl = (0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar)).mean(0).clamp(min=self.free_bits).sum()
            out["kl"] = min(1.0, step / max(1, self.kl_anneal_steps)) * kl / n_tok.mean()
        return out

    @torch.no_grad()
    def encode(self, sentences: Sequence[Sequence[int]]) -> torch.Tensor:
        """Posterior means ``(n, latent_dim)``."""
        return self.posterior(pad_batch(sentences))[0]

    @torch.no_grad()
    def decode(self, z: torch.Tensor, max_len: int, generator: torch.Generator | None = None) -> list[list[int]]:
        """Greedy decoding (or, with a ``generator``, sampling at temperature 1), stopping at EOS or after
        ``max_len`` tokens."""
        n = len(z)
        h = torch.tanh(self.from_z(z))[None]
        x = torch.full((n, 1), BOS, dtype=torch.long)
        out: list[list[int]] = [[] for _ in range(n)]
        done = torch.zeros(n, dtype=torch.bool)
        for _ in range(max_len):
            o, h = self.dec(self._step_inputs(z, x), h)
            logits = self.head(o[:, -1])
            k = (
                logits.argmax(-1)
                if generator is None
                else torch.multinomial(F.softmax(logits, -1), 1, generator=generator)[:, 0]
            )
            for i in torch.nonzero(~done)[:, 0].tolist():
                if k[i] == EOS:
                    done[i] = True
                else:
                    out[i].append(int(k[i]))
            if bool(done.all()):
                break
            x = k[:, None]
        return out


def fit_sequence_model(
    model: GRULanguageModel | GRUSeqAutoencoder,
    sentences: Sequence[Sequence[int]],
    epochs: int,
    seed: int,
    batch_size: int = 64,
    lr: float = 3e-3,
) -> list[float]:
    """Adam on ``sum(model.loss(y, step).values())`` over shuffled batches; returns the mean loss per epoch."""
    torch.manual_seed(seed)
    torch.set_flush_denormal(True)
    data = pad_batch(sentences)
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    history, step = [], 0
    for _ in range(epochs):
        order, total = torch.randperm(len(data), generator=g), 0.0
        for i in range(0, len(data), batch_size):
            y = data[order[i : i + batch_size]]
            y = y[:, : int((y != PAD).sum(1).max())]  # trim padding columns
            loss = cast(torch.Tensor, sum(model.loss(y, step).values()))  # both models return terms
            opt.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            opt.step()
            total += float(loss.detach()) * len(y)
            step += 1
        history.append(total / len(data))
    model.eval()
    return history

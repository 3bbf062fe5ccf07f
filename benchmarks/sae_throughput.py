"""TopK SAE training throughput: isthmus sparse backward vs naive autograd vs SAELens, same data/batch/Adam.

Run: ``.venv/bin/python benchmarks/sae_throughput.py`` (a few minutes on 2 cores; ``--quick`` for a smoke run).
``--bottleneck batchtopk|matryoshka`` measures those through the COO sparse kernels instead (the peer is then
SAELens' ``BatchTopKTrainingSAE`` / ``MatryoshkaBatchTopKTrainingSAE``; the FLOP bound is the same, k being the
mean L0).

Each trainer takes the same fixed activation tensor (B, d), batch size and Adam (lr 1e-4), one warm-up
step, then ``steps`` timed steps (forward, backward, optimizer step; ours also renormalises decoder rows); a trainer's
speed is its fastest step, as ``matmul_peak`` takes the fastest of its repeats (``timeit``'s rule: on a shared machine
the slower steps measure the neighbours, and a mean over three steps swung the ratio by ±0.4 between runs).
Every trainer gets torch's fused Adam by default, because ``train_sae`` uses it by default (``SAETrainConfig.fused_adam``;
the for-loop Adam is ~3× slower, ~70 ms of a d=768 step on CPU); ``--adam for-loop`` gives every trainer the for-loop one.
No AuxK (no dead latents at the start) in any of them. Like ``train_sae`` and the CLI, the process keeps freed
host memory for reuse (``isthmus._runtime.pool_host_memory``; every trainer here shares the process, so the peer
gets it too); ``--no-host-pool`` measures glibc's default, where each large buffer is a fresh ``mmap``.

* ``isthmus-sparse`` — :class:`isthmus.interp.sae.SparseAutoEncoder` with the sparse TopK kernels.
* ``isthmus-naive`` — the same model with ``sparse_backward=False`` (dense (B, m) code, plain autograd).
* ``sae-lens`` — ``sae_lens.TopKTrainingSAE.training_forward_pass`` (pip package ``sae-lens``), the peer.

FLOP bound (per token, forward + backward together, the minimum any TopK trainer must do):
``2·d·m`` for the dense encoder forward (every pre-activation is needed to rank the latents) plus
``8·k·d`` for the k-sparse rest (decoder forward, decoder-input gradient, W_dec gradient, W_enc
gradient: 2·k·d each). The tokens/s bound is the measured fp32 matmul peak (a 2048³ ``torch.mm`` in the
same process and thread count) divided by that count; ``bound_fraction`` = measured / bound. (Adam and
the top-k selection are memory-bound and not counted, so 100 % is not reachable.)

The last line is ``ratio_vs_peer <ours/sae-lens> bound_fraction <ours/bound>`` for d = 768.
"""

from __future__ import annotations

import argparse
import time
import warnings

import torch

from isthmus._runtime import pool_host_memory
from isthmus.interp.sae import SAEConfig, SparseAutoEncoder

CASES = {  # name: (d, m, k, batch, threads, timed steps)
    "small": (128, 2048, 16, 4096, 1, 10),
    "d768": (768, 24576, 32, 1024, 2, 5),
}


def matmul_peak(threads: int, n: int = 2048, reps: int = 5) -> float:
    """Measured fp32 matmul FLOP/s (best of ``reps``) with ``threads`` intra-op threads."""
    torch.set_num_threads(threads)
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best


def adam(params, fused: bool) -> torch.optim.Adam:
    """The one optimizer every trainer gets: Adam, lr 1e-4 (``fused`` = one kernel per parameter)."""
    return torch.optim.Adam(params, lr=1e-4, fused=fused or None)


def _time_steps(step, steps: int) -> float:
    """Seconds of the fastest of ``steps`` timed steps, after one warm-up step."""
    step()
    best = float("inf")
    for _ in range(steps):
        t = time.perf_counter()
        step()
        best = min(best, time.perf_counter() - t)
    return best


BOTTLENECKS = {"topk": "sae_topk", "batchtopk": "sae_batchtopk", "matryoshka": "sae_matryoshka"}
MATRYOSHKA_FRACTIONS = (0.125, 0.25, 0.5, 1.0)  # isthmus' default prefixes; the peer gets the same widths


def bench_isthmus(x: torch.Tensor, m: int, k: int, steps: int, sparse: bool, fused: bool,
                  bottleneck: str = "topk") -> float:
    torch.manual_seed(0)
    sae = SparseAutoEncoder(SAEConfig(d_in=x.shape[1], d_sae=m, sparse_backward=sparse, bottleneck=BOTTLENECKS[bottleneck],
                                      bottleneck_config={"k": k, "dead_steps": 10**9})).train()
    opt = adam(sae.parameters(), fused)

    def step():
        out = sae.compute_loss(x)
        opt.zero_grad(set_to_none=True)
        out.loss.backward()
        opt.step()
        sae.normalize_decoder_()

    return x.shape[0] / _time_steps(step, steps)


def bench_saelens(x: torch.Tensor, m: int, k: int, steps: int, fused: bool, bottleneck: str = "topk") -> float | None:
    try:
        import sae_lens
        from sae_lens.saes.sae import TrainStepInput
    except ImportError as exc:  # the peer is optional (the ``bench`` extra)
        print(f"  sae-lens not importable ({exc}); skipping the peer")
        return None
    torch.manual_seed(0)
    d = x.shape[1]
    if bottleneck == "topk":
        sae = sae_lens.TopKTrainingSAE(sae_lens.TopKTrainingSAEConfig(d_in=d, d_sae=m, k=k)).train()
    elif bottleneck == "batchtopk":
        sae = sae_lens.BatchTopKTrainingSAE(sae_lens.BatchTopKTrainingSAEConfig(d_in=d, d_sae=m, k=k)).train()
    else:
        from sae_lens.saes.matryoshka_batchtopk_sae import MatryoshkaBatchTopKTrainingSAEConfig

        widths = sorted({max(1, round(f * m)) for f in MATRYOSHKA_FRACTIONS})
        sae = sae_lens.MatryoshkaBatchTopKTrainingSAE(
            MatryoshkaBatchTopKTrainingSAEConfig(d_in=d, d_sae=m, k=k, matryoshka_widths=widths)).train()
    opt = adam(sae.parameters(), fused)
    n = [0]

    def step():
        out = sae.training_forward_pass(TrainStepInput(sae_in=x, coefficients={}, dead_neuron_mask=None,
                                                       n_training_steps=n[0], is_logging_step=False))
        opt.zero_grad(set_to_none=True)
        out.loss.backward()
        opt.step()
        n[0] += 1

    return x.shape[0] / _time_steps(step, steps)


def run_case(name: str, quick: bool, threads: int | None, fused: bool, bottleneck: str = "topk") -> dict[str, float | None]:
    d, m, k, batch, default_threads, steps = CASES[name]
    threads = threads or default_threads
    if quick:
        m, batch, steps = m // 8, batch // 4, 2
    torch.set_num_threads(threads)
    torch.set_flush_denormal(True)
    x = torch.randn(batch, d, generator=torch.Generator().manual_seed(0))  # one fixed activation tensor
    peak = matmul_peak(threads)
    flops = 2 * d * m + 8 * k * d
    res = {"sparse": bench_isthmus(x, m, k, steps, True, fused, bottleneck),
           "naive": bench_isthmus(x, m, k, steps, False, fused, bottleneck),
           "peer": bench_saelens(x, m, k, steps, fused, bottleneck)}
    bound = peak / flops
    peer = res["peer"]
    print(f"[{name}] {bottleneck} d={d} m={m} k={k} batch={batch} threads={threads} steps={steps} "
          f"adam={'fused' if fused else 'for-loop'}")
    print(f"  matmul peak {peak / 1e9:.1f} GFLOP/s; bound {flops / 1e6:.2f} MFLOP/token -> {bound:,.0f} tokens/s")
    for key, label in (("sparse", "isthmus-sparse"), ("naive", "isthmus-naive"), ("peer", "sae-lens")):
        if res[key] is not None:
            print(f"  {label:15s} {res[key]:>10,.0f} tokens/s  ({res[key] / bound:.1%} of bound)")
    print(f"  sparse/naive {res['sparse'] / res['naive']:.2f}x" +
          (f"; sparse/sae-lens {res['sparse'] / peer:.2f}x" if peer else ""))
    return {**res, "bound": bound}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smaller m and batch, 2 steps (smoke test)")
    ap.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    ap.add_argument("--threads", type=int, default=None, help="intra-op threads for every case (default: per case)")
    ap.add_argument("--adam", choices=["fused", "for-loop"], default="fused",
                    help="Adam for every trainer: fused (train_sae's default; one kernel per tensor) or for-loop")
    ap.add_argument("--bottleneck", choices=list(BOTTLENECKS), default="topk", help="topk (default), batchtopk, matryoshka")
    ap.add_argument("--no-host-pool", action="store_true", help="glibc's default allocator thresholds (no reuse)")
    args = ap.parse_args()
    warnings.filterwarnings("ignore")
    pooled = False if args.no_host_pool else pool_host_memory()
    print(f"host memory pooled: {pooled}")
    results = {name: run_case(name, args.quick, args.threads, args.adam == "fused", args.bottleneck) for name in args.cases}
    last = results.get("d768") or results[args.cases[-1]]
    ratio = last["sparse"] / last["peer"] if last["peer"] else float("nan")
    print(f"ratio_vs_peer {ratio:.2f} bound_fraction {last['sparse'] / last['bound']:.3f}")


if __name__ == "__main__":
    main()

"""FLOPs against hand counts, 8-bit link quantisation, split model costs, side-by-side latency ratio."""

import torch
from torch import nn

from isthmus.tasks.compress import (
    SplitModel, count_flops, dequantize_uint8, latency_ratio, quantize_uint8, transmitted_bytes,
)


def test_flops_match_hand_counts():
    lin = nn.Linear(10, 7)
    assert count_flops(lin, torch.zeros(4, 10)) == 2 * 4 * 10 * 7  # one multiply-add per weight per row
    conv = nn.Conv2d(3, 5, kernel_size=3, padding=1)
    # output 5 x 8 x 8 positions, each a 3 x 3 x 3 dot product
    assert count_flops(conv, torch.zeros(2, 3, 8, 8)) == 2 * 2 * 5 * 8 * 8 * 3 * 3 * 3
    mlp = nn.Sequential(nn.Linear(6, 4), nn.ReLU(), nn.Linear(4, 2))
    assert count_flops(mlp, torch.zeros(1, 6)) == 2 * (6 * 4 + 4 * 2)


def test_uint8_round_trip_error_is_at_most_half_a_step():
    x = torch.randn(16, 32)
    q = quantize_uint8(x)
    assert q.values.dtype == torch.uint8 and q.values.min() == 0 and q.values.max() == 255
    err = (dequantize_uint8(q) - x).abs().max().item()
    assert err <= q.scale / 2 + 1e-6
    const = quantize_uint8(torch.full((3,), 2.5))
    assert torch.equal(dequantize_uint8(const), torch.full((3,), 2.5))


def test_split_model_costs_and_bytes():
    head, tail = nn.Sequential(nn.Linear(20, 8), nn.ReLU()), nn.Linear(8, 3)
    split = SplitModel(head, tail).eval()
    x = torch.randn(4, 20)
    c = split.costs(x)
    assert c["head_flops"] == 2 * 20 * 8 and c["tail_flops"] == 2 * 8 * 3
    assert c["bytes_per_sample"] == 8 + 2  # 8 uint8 values + the scale/zero share of the batch
    assert transmitted_bytes(torch.zeros(4, 8), quantized=False) == 32
    exact = tail(head(x))
    assert (split(x) - exact).abs().max() < 0.05
    split.train()
    assert torch.equal(split(x), exact)  # training sees the float tensor


def test_latency_ratio_calls_both_sides_interleaved():
    calls = []
    r = latency_ratio(lambda: calls.append("a"), lambda: calls.append("b"), repeats=4, warmup=1)
    assert calls == ["a", "b"] * 5 and r > 0  # no timing asserted: speed lives in benchmarks


def test_fake_quantize_per_sample_round_trip_and_straight_through_gradient():
    from isthmus.tasks.compress import fake_quantize_uint8

    x = torch.stack([torch.linspace(-1, 1, 50), torch.linspace(0, 100, 50)]).view(2, 2, 5, 5).requires_grad_(True)
    q = fake_quantize_uint8(x)
    rng = torch.tensor([2.0, 100.0]).view(2, 1, 1, 1)
    assert torch.all((q - x).abs() <= rng / 510 + 1e-5)  # half a step of each sample's own range
    assert len(torch.unique(q[0])) <= 256
    q.sum().backward()
    assert torch.equal(x.grad, torch.ones_like(x))  # straight through
    const = torch.full((1, 3), 4.0)
    assert torch.equal(fake_quantize_uint8(const), const)

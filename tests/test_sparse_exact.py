"""Exact, hand-computed values for every SAE family in ``bottlenecks/sparse.py``.

The behaviour tests elsewhere (training converges, L0 is "about k") cannot tell a correct rule from a
near miss; these pin each rule to numbers worked out by hand, so a one-line slip (a flipped
comparison, a swapped EMA weight, a wrong kernel width) fails here. Mutation audit:
``../shared/audits/test-strength.md`` S01-S25.
"""

import math

import pytest
import torch

from isthmus.bottlenecks import BOTTLENECKS
from isthmus.bottlenecks.sparse import (
    BatchTopKConfig,
    JumpReLUConfig,
    MatryoshkaSAEConfig,
    ReLUL1Config,
    SparseConfig,
    TopAFAConfig,
    TopKConfig,
    _JumpReLU,
    _Step,
)
from isthmus.config import ConfigError


def t(rows):
    return torch.tensor(rows, dtype=torch.float64)


# ---- dead-latent counters --------------------------------------------------------------------------
def test_track_resets_on_firing_counts_only_training_and_dead_at_the_boundary():
    bn = BOTTLENECKS.build("sae_topk", latent_dim=4, k=1, dead_steps=2).train()
    assert bn.steps_since_fired.dtype == torch.long  # float32 counters would stop counting at 2**24
    out = bn(torch.tensor([[5.0, 1, 0, 0], [4, 2, 0, 0], [3, 0, 1, 0]]))  # only latent 0 fires
    assert bn.steps_since_fired.tolist() == [0, 1, 1, 1]
    assert float(out.stats["l0"]) == 1.0  # one active latent per row (mean over rows, not latents)
    out = bn(torch.tensor([[0.0, 5, 0, 0]]))  # latent 1 fires: its counter resets, the others advance
    assert bn.steps_since_fired.tolist() == [1, 0, 2, 2]
    assert bn.dead_mask().tolist() == [False, False, True, True]  # dead at exactly dead_steps
    assert float(out.stats["dead_fraction"]) == 0.5
    bn.eval()
    out = bn(torch.tensor([[0.0, 0, 0, 9]]))  # eval forwards neither advance nor reset the counters
    assert bn.steps_since_fired.tolist() == [1, 0, 2, 2]
    assert float(out.stats["dead_fraction"]) == 0.5


def test_l0_stat_is_mean_active_per_row():
    bn = BOTTLENECKS.build("sae_relu", latent_dim=3, l1_coeff=0.0).eval()
    out = bn(torch.tensor([[1.0, 1, 1], [1, 0, 0]]))
    assert float(out.stats["l0"]) == 2.0
    assert out.losses == {}  # l1_coeff=0: no loss term at all


def test_relu_l1_warmup_is_off_without_warmup_steps():
    bn = BOTTLENECKS.build("sae_relu", latent_dim=2, l1_coeff=0.5, l1_warmup_steps=0)
    out = bn(torch.tensor([[1.0, -3.0], [2.0, 4.0]]))
    assert out.latent.tolist() == [[1.0, 0.0], [2.0, 4.0]]
    assert float(out.losses["l1"]) == pytest.approx(0.5 * (1 + 6) / 2)


# ---- TopK ------------------------------------------------------------------------------------------
def test_topk_exact_values_indices_and_relu_after_selection():
    bn = BOTTLENECKS.build("sae_topk", latent_dim=4, k=2)
    out = bn(t([[3.0, -1.0, 2.0, 0.5], [-1.0, -2.0, -3.0, -0.5]]))
    # row 2 has only negative pre-activations: its top 2 (-0.5, -1) are rectified to 0
    assert out.latent.tolist() == [[3.0, 0.0, 2.0, 0.0], [0.0, 0.0, 0.0, 0.0]]
    assert out.codes.tolist() == [[0, 2], [3, 0]]


def test_topk_k_larger_than_the_dictionary_keeps_everything():
    assert TopKConfig(latent_dim=3, k=10).k_eff == 3
    bn = BOTTLENECKS.build("sae_topk", latent_dim=3, k=10)
    assert bn(t([[1.0, 2.0, -1.0]])).latent.tolist() == [[1.0, 2.0, 0.0]]


# ---- BatchTopK -------------------------------------------------------------------------------------
def test_batchtopk_threshold_is_an_ema_of_the_smallest_kept_activation():
    bn = BOTTLENECKS.build("sae_batchtopk", latent_dim=4, k=1, threshold_momentum=0.9).train()
    assert float(bn.threshold) == -1.0  # not estimated yet
    z = bn(t([[5.0, 4.0, 0.0, 0.0], [3.0, 0.0, 0.0, -1.0]])).latent  # keeps the k·B = 2 largest
    assert z.tolist() == [[5.0, 4.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]]
    assert float(bn.threshold) == pytest.approx(4.0)  # first estimate: the smallest kept value
    out = bn(t([[2.0, 1.0, 0.0, 0.0], [1.5, 0.0, 0.0, 0.0]]))  # keeps 2 and 1.5
    assert float(bn.threshold) == pytest.approx(0.9 * 4.0 + 0.1 * 1.5)
    assert out.stats["threshold"] == pytest.approx(0.9 * 4.0 + 0.1 * 1.5)


def test_batchtopk_threshold_ema_with_small_activations():
    bn = BOTTLENECKS.build("sae_batchtopk", latent_dim=2, k=1, threshold_momentum=0.9).train()
    bn(t([[0.5, 0.0]]))
    assert float(bn.threshold) == pytest.approx(0.5)  # values below 1 count as kept activations too
    bn(t([[0.2, 0.0]]))
    assert float(bn.threshold) == pytest.approx(0.9 * 0.5 + 0.1 * 0.2)  # an estimate < 1 is still averaged


def test_batchtopk_eval_uses_the_learned_threshold():
    bn = BOTTLENECKS.build("sae_batchtopk", latent_dim=4, k=1)
    bn.threshold.fill_(0.75)
    bn.eval()
    z = bn(t([[3.0, 0.5, 2.0, 1.5], [0.7, 0.75, 0.1, -1.0]])).latent
    # every value strictly above θ = 0.75 survives, however many per row (not per-sample top-1)
    assert z.tolist() == [[3.0, 0.0, 2.0, 1.5], [0.0, 0.0, 0.0, 0.0]]
    assert float(bn.threshold) == 0.75  # eval never moves the threshold
    bn.threshold.fill_(0.0)  # an estimate of exactly 0 is an estimate: plain ReLU, not top-k
    assert bn(t([[3.0, 0.5, -2.0, 1.0]])).latent.tolist() == [[3.0, 0.5, 0.0, 1.0]]
    bn.train()  # ... and training averages into it rather than starting over
    bn(t([[2.0, 0.0, 0.0, 0.0]]))
    assert float(bn.threshold) == pytest.approx(0.01 * 2.0)


def test_batchtopk_eval_before_any_training_falls_back_to_per_sample_topk():
    bn = BOTTLENECKS.build("sae_batchtopk", latent_dim=3, k=1).eval()
    z = bn(t([[1.0, 3.0, 2.0], [-1.0, -2.0, -3.0]])).latent
    assert z.tolist() == [[0.0, 3.0, 0.0], [0.0, 0.0, 0.0]]


def test_batchtopk_all_zero_batch_leaves_threshold_unset():
    bn = BOTTLENECKS.build("sae_batchtopk", latent_dim=3, k=1).train()
    bn(-torch.ones(2, 3))
    assert float(bn.threshold) == -1.0


def test_matryoshka_nested_sizes():
    bn = BOTTLENECKS.build("sae_matryoshka", latent_dim=16, prefix_fractions=[0.25, 0.5, 1.0])
    assert bn.nested_sizes == [4, 8, 16]
    tiny = BOTTLENECKS.build("sae_matryoshka", latent_dim=4, prefix_fractions=[0.01, 1.0])
    assert tiny.nested_sizes == [1, 4]  # a prefix keeps at least one latent


# ---- JumpReLU --------------------------------------------------------------------------------------
def test_jumprelu_gradient_to_h_passes_gradcheck_away_from_the_jump():
    theta = t([0.5, 1.0, 1.5])
    h = t([[0.2, 1.4, 2.0], [0.9, 0.3, 1.2], [-0.4, 2.5, 1.9]]).requires_grad_()
    assert torch.autograd.gradcheck(lambda x: _JumpReLU.apply(x, theta, 1e-3), (h,))
    at = t([[0.5, 1.0, 1.5]]).requires_grad_()  # exactly at θ: output 0 (strict >), so gradient 0
    _JumpReLU.apply(at, theta, 1e-3).sum().backward()
    assert at.grad.tolist() == [[0.0, 0.0, 0.0]]


def test_jumprelu_threshold_pseudo_derivative_by_hand():
    # ∂/∂θ = Σ_b −(θ/ε)·K((h_b − θ)/ε)·g_b with K the rectangle on (−½, ½); θ = 1, ε = 0.5
    theta = t([1.0]).requires_grad_()
    h = t([[1.1], [1.3], [0.8], [0.6]])  # (h − θ)/ε = 0.2 in, 0.6 out, −0.4 in, −0.8 out
    g = t([[1.0], [1.0], [2.0], [1.0]])
    y = _JumpReLU.apply(h, theta, 0.5)
    assert y.tolist() == [[1.1], [1.3], [0.0], [0.0]]
    (y * g).sum().backward()
    assert theta.grad.tolist() == pytest.approx([-(1.0 / 0.5) * (1.0 + 2.0)])


def test_jumprelu_kernel_is_open_and_per_latent():
    # two latents, three rows: θ = (1, 2), ε = 0.5; (h − θ)/ε = ±0.5 exactly sits on the open kernel's edge
    theta = t([1.0, 2.0]).requires_grad_()
    h = t([[0.75, 2.1], [1.25, 2.2], [1.1, 5.0]])
    (_JumpReLU.apply(h, theta, 0.5) * t([[1.0, 1.0], [1.0, 3.0], [2.0, 1.0]])).sum().backward()
    # latent 0: only row 3 (0.2) inside -> −(1/0.5)·2; latent 1: rows 1, 2 inside -> −(2/0.5)·(1 + 3)
    assert theta.grad.tolist() == pytest.approx([-4.0, -16.0])


def test_step_pseudo_derivative_by_hand():
    theta = t([2.0]).requires_grad_()
    h = t([[2.1], [2.6], [1.8]]).requires_grad_()  # (h − θ)/ε = 0.2 in, 1.2 out, −0.4 in; ε = 0.5
    s = _Step.apply(h, theta, 0.5)
    assert s.tolist() == [[1.0], [1.0], [0.0]]
    (s * t([[2.0], [1.0], [3.0]])).sum().backward()  # upstream gradients 2 and 3 inside the kernel
    assert theta.grad.tolist() == pytest.approx([-(1.0 / 0.5) * (2.0 + 3.0)])
    assert h.grad is None  # the step passes no gradient to h


def test_jumprelu_forward_and_l0_loss_value_with_warmup():
    bn = BOTTLENECKS.build("sae_jumprelu", latent_dim=3, threshold_init=1.0, bandwidth=0.1,
                           l0_coeff=0.2, l0_warmup_steps=4)
    bn.set_step(1)  # warm-up factor (1 + 1) / 4
    out = bn(torch.tensor([[2.0, 0.5, 1.0], [0.0, 0.0, 5.0]]))
    assert out.latent.tolist() == [[2.0, 0.0, 0.0], [0.0, 0.0, 5.0]]  # strictly above θ = 1
    assert float(out.losses["l0"].detach()) == pytest.approx(0.2 * 0.5 * (1 + 1) / 2)
    assert float(out.stats["l0"]) == 1.0


def test_jumprelu_threshold_gradient_through_the_bottleneck():
    bn = BOTTLENECKS.build("sae_jumprelu", latent_dim=1, threshold_init=1.0, bandwidth=0.5, l0_coeff=0.0)
    out = bn(torch.tensor([[1.1], [0.8], [3.0]]))
    assert out.losses == {}
    out.latent.sum().backward()
    # d/d log θ = θ · ∂/∂θ = 1 · (−(1/0.5) · 2 rows inside the kernel)
    assert float(bn.log_threshold.grad) == pytest.approx(-4.0)


# ---- top-AFA ---------------------------------------------------------------------------------------
def test_topafa_keeps_the_prefix_closest_to_the_input_norm_and_squares_the_gap():
    bn = BOTTLENECKS.build("sae_topafa", latent_dim=4, afa_coeff=1.0)
    out = bn(t([[3.0, 4.0, 0.0, 0.0]]), input_norm=t([4.5]))
    # ranked 4, 3: cumulative norms 4, 5; |4 − 4.5| = |5 − 4.5| and argmin takes the first: k = 1
    assert out.codes.tolist() == [1]
    assert out.latent.tolist() == [[0.0, 4.0, 0.0, 0.0]]
    assert float(out.losses["afa"]) == pytest.approx((4.0 - 4.5) ** 2)
    out = bn(t([[3.0, 4.0, 0.0, 0.0]]), input_norm=t([5.0]))
    assert out.codes.tolist() == [2] and float(out.losses["afa"]) == pytest.approx(0.0)


def test_topafa_ranks_and_measures_by_decoder_norm():
    bn = BOTTLENECKS.build("sae_topafa", latent_dim=4, afa_coeff=1.0)
    h = t([[3.0, 2.0, 0.0, 0.0]])
    plain = bn(h, input_norm=t([4.0]))  # cumulative 3, √13 ≈ 3.61: k = 2
    assert plain.latent.tolist() == [[3.0, 2.0, 0.0, 0.0]]
    weighted = bn(h, decoder_norm=t([0.5, 2.0, 1.0, 1.0]), input_norm=t([4.0]))
    # scored 1.5, 4.0: latent 1 ranks first and alone matches ‖x‖ = 4; z keeps the unweighted value
    assert weighted.latent.tolist() == [[0.0, 2.0, 0.0, 0.0]]
    assert float(weighted.losses["afa"]) == pytest.approx(0.0)
    assert float(weighted.stats["k_mean"]) == 1.0


def test_topafa_loss_is_the_batch_mean_of_per_row_squared_gaps():
    bn = BOTTLENECKS.build("sae_topafa", latent_dim=2, afa_coeff=0.5)
    out = bn(t([[3.0, 0.0], [0.0, 2.0]]), input_norm=t([4.0, 1.0]))  # each row keeps its one value
    assert float(out.losses["afa"]) == pytest.approx(0.5 * ((3 - 4) ** 2 + (2 - 1) ** 2) / 2)


def test_topafa_k_is_capped_at_256_by_default():
    bn = BOTTLENECKS.build("sae_topafa", latent_dim=300, afa_coeff=0.0)
    out = bn(torch.ones(1, 300), input_norm=torch.tensor([300.0 ** 0.5]))  # would like all 300
    assert out.codes.tolist() == [256] and int((out.latent != 0).sum()) == 256
    capped = BOTTLENECKS.build("sae_topafa", latent_dim=300, k_max=5, afa_coeff=0.0)
    assert capped(torch.ones(1, 300), input_norm=torch.tensor([300.0 ** 0.5])).codes.tolist() == [5]


def test_topafa_builds_its_masks_on_the_input_device():
    # the meta device stands in for a GPU: a mask made on the CPU cannot be combined with meta tensors
    bn = BOTTLENECKS.build("sae_topafa", latent_dim=4, afa_coeff=1.0).to("meta")
    out = bn(torch.ones(2, 4, device="meta"), input_norm=torch.ones(2, device="meta"))
    assert out.latent.device.type == "meta" and out.losses["afa"].device.type == "meta"


def test_topafa_default_target_is_the_pre_activation_norm():
    bn = BOTTLENECKS.build("sae_topafa", latent_dim=3, afa_coeff=0.0)
    out = bn(t([[3.0, 4.0, 0.0]]))  # ‖h‖ = 5 = norm of both kept values
    assert out.latent.tolist() == [[3.0, 4.0, 0.0]] and out.losses == {}


# ---- invalid configs -------------------------------------------------------------------------------
@pytest.mark.parametrize("cls, kwargs", [
    (SparseConfig, {"dead_steps": 0}),
    (ReLUL1Config, {"dead_steps": -5}),
    (TopKConfig, {"k": 0}),
    (BatchTopKConfig, {"k": 0}),
    (BatchTopKConfig, {"threshold_momentum": 1.0}),
    (BatchTopKConfig, {"threshold_momentum": -0.1}),
    (JumpReLUConfig, {"bandwidth": 0.0}),
    (JumpReLUConfig, {"bandwidth": -1e-3}),
    (JumpReLUConfig, {"threshold_init": 0.0}),
    (TopAFAConfig, {"k_max": 0}),
    (MatryoshkaSAEConfig, {"prefix_fractions": [0.5, 0.9]}),  # last must be 1
    (MatryoshkaSAEConfig, {"prefix_fractions": [0.5, 0.25, 1.0]}),  # must increase
    (MatryoshkaSAEConfig, {"prefix_fractions": [0.0, 1.0]}),
    (MatryoshkaSAEConfig, {"prefix_fractions": []}),
    (MatryoshkaSAEConfig, {"k": 0}),
])
def test_invalid_sparse_configs_are_rejected(cls, kwargs):
    with pytest.raises(ConfigError, match=cls.__name__):
        cls(latent_dim=8, **kwargs)


@pytest.mark.parametrize("cls, kwargs", [
    (SparseConfig, {"dead_steps": 1}),
    (TopKConfig, {"k": 1}),
    (BatchTopKConfig, {"threshold_momentum": 0.0}),
    (JumpReLUConfig, {"bandwidth": 1e-9, "threshold_init": 1e-9}),
    (TopAFAConfig, {"k_max": 1}),
    (MatryoshkaSAEConfig, {"prefix_fractions": [1.0]}),
])
def test_boundary_sparse_configs_are_accepted(cls, kwargs):
    cls(latent_dim=8, **kwargs)


def test_jumprelu_threshold_init_is_stored_in_log_space():
    bn = BOTTLENECKS.build("sae_jumprelu", latent_dim=2, threshold_init=0.25)
    assert bn.log_threshold.tolist() == pytest.approx([math.log(0.25)] * 2)
    assert bn.threshold.tolist() == pytest.approx([0.25, 0.25])

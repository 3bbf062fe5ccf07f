"""Early exit: threshold 0 is the full network, infinity is the branch; calibration keeps val accuracy; LeNet MACs."""

import torch

from isthmus.models.early_exit import EarlyExitNet, LeNet5, calibrate_threshold, entropy
from isthmus.tasks.compress import count_flops


def test_threshold_extremes_and_entropy():
    torch.manual_seed(0)
    net = EarlyExitNet().eval()
    x = torch.rand(16, 1, 28, 28)
    b, f = net(x)
    assert torch.equal(net.predict(x, threshold=0.0), f.argmax(-1))
    assert torch.equal(net.predict(x, threshold=float("inf")), b.argmax(-1))
    uniform = torch.zeros(1, 10)
    assert abs(entropy(uniform).item() - torch.log(torch.tensor(10.0)).item()) < 1e-6


def test_calibration_keeps_validation_accuracy_within_tolerance():
    torch.manual_seed(0)
    net = EarlyExitNet().eval()
    x, y = torch.rand(64, 1, 28, 28), torch.randint(0, 10, (64,))
    t = calibrate_threshold(net, x, y, tolerance=0.02)
    full = (net(x)[1].argmax(-1) == y).float().mean().item()
    assert (net.predict(x, threshold=t) == y).float().mean().item() >= full - 0.02


def test_lenet_flops_match_a_hand_count():
    conv1 = 2 * 6 * 28 * 28 * 25          # 5x5x1 kernels, padding 2
    conv2 = 2 * 16 * 10 * 10 * 6 * 25     # 5x5x6 kernels, valid
    fcs = 2 * (400 * 120 + 120 * 84 + 84 * 10)
    assert count_flops(LeNet5(), torch.zeros(1, 1, 28, 28)) == conv1 + conv2 + fcs

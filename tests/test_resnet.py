"""Small ResNet with named stages: shapes, head ∘ tail = the network, FLOPs against a hand count."""

import pytest
import torch

from isthmus.nn.resnet import BasicBlock, ResNet
from isthmus.tasks.compress import count_flops


def test_stage_shapes_and_head_tail_compose_to_the_network():
    torch.manual_seed(0)
    net = ResNet(widths=(8, 16, 32)).eval()
    x = torch.randn(3, 3, 28, 28)
    f = net.features(x)
    assert f["stage1"].shape == (3, 8, 14, 14) and f["stage2"].shape == (3, 16, 7, 7)
    assert f["stage3"].shape == (3, 32, 4, 4) and f["logits"].shape == (3, 10)
    with torch.no_grad():
        assert torch.allclose(net.tail("stage2")(net.head("stage2")(x)), net(x), atol=1e-6)
        assert torch.allclose(net.head("stage2")(x), f["stage2"])
    with pytest.raises(ValueError, match="unknown stage"):
        net.head("stage9")
    with pytest.raises(ValueError, match="one length"):
        ResNet(widths=(8, 16), strides=(2,))


def test_basic_block_flops_match_a_hand_count():
    blk = BasicBlock(4, 4, stride=1)  # identity shortcut: two 3×3 convs, no bias
    flops = count_flops(blk, torch.zeros(1, 4, 6, 6))
    assert flops == 2 * (2 * 6 * 6 * 4 * 4 * 3 * 3)

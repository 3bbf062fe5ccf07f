"""Hooks on plain nn.Modules: capture, patch, input points, early stop, clear errors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from isthmus.interp import HookError, Point, StopForward, available_points, capture, patch, run_with_cache


class TupleOut(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, str]:
        return self.lin(x), "extra"


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.first = TupleOut()
        self.body = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 3))
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        h, _ = self.first(x)
        return self.body(h)


def test_capture_matches_manual_forward_and_removes_hooks():
    net, x = Net(), torch.randn(5, 4)
    with torch.no_grad(), capture(net, ["first", "body.0", "body.2"]) as acts:
        out = net(x)
    h = net.first.lin(x)
    torch.testing.assert_close(acts["first"], h)  # tuple output: first element
    torch.testing.assert_close(acts["body.0"], net.body[0](h))
    torch.testing.assert_close(acts["body.2"], out)
    assert not any(m._forward_hooks for m in net.modules())


def test_patch_replaces_output_and_tuple_outputs():
    net, x = Net(), torch.randn(5, 4)
    with torch.no_grad():
        clean = net(x)
        with patch(net, "body.1", lambda a: torch.zeros_like(a)):
            ablated = net(x)
        torch.testing.assert_close(ablated, net.body[2].bias.expand(5, 3))
        with patch(net, "first", lambda a: a * 0):  # the module returns (tensor, "extra")
            zeroed = net(x)
        torch.testing.assert_close(zeroed, net.body(torch.zeros(5, 4)))
        assert torch.equal(net(x), clean)  # hook removed


def test_input_point_with_read_write_transforms():
    net, x = Net(), torch.randn(2, 4)
    split = Point("heads", "body.2", "input", read=lambda t: t.unflatten(-1, (2, 3)), write=lambda t: t.flatten(-2))
    with torch.no_grad(), capture(net, [split]) as acts:
        net(x)
    assert acts["heads"].shape == (2, 2, 3)
    with torch.no_grad(), patch(net, split, lambda t: t * torch.tensor([0.0, 1.0])[:, None]):
        out = net(x)
    hidden = net.body[1](net.body[0](net.first.lin(x)))
    hidden[:, :3] = 0
    torch.testing.assert_close(out, net.body[2](hidden))


def test_unknown_point_lists_close_matches():
    with pytest.raises(HookError, match=r"no hook point 'body.O'; close matches: \[.*'body.0'"):
        with capture(Net(), ["body.O"]):
            pass
    assert "body.2" in available_points(Net())


def test_patch_shape_mismatch_and_readonly_are_errors():
    net = Net()
    with pytest.raises(ValueError, match="returned shape"), patch(net, "body.0", lambda a: a[:, :2]):
        net(torch.randn(1, 4))
    ro = Point("ro", "body.0", readonly=True)
    with pytest.raises(HookError, match="read-only"), patch(net, ro, lambda a: a):
        pass


def test_run_with_cache_stops_early():
    net = Net()
    seen = []
    net.body[2].register_forward_hook(lambda *a: seen.append(1))
    acts = run_with_cache(net, torch.randn(3, 4), ["body.0"])
    assert acts["body.0"].shape == (3, 6) and not seen  # the last layer never ran
    with pytest.raises(StopForward), capture(net, ["first"], stop_early=True):
        net(torch.randn(3, 4))

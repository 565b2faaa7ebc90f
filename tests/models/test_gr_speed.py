"""GR's CPU speed pieces compute what the torch calls they replace compute."""

from __future__ import annotations

import pytest
import torch

from grmodel.models.gr_speed import Dropout16, short_softmax


def test_short_softmax_equals_torchs_forward_and_backward():
    torch.manual_seed(0)
    x = (torch.randn(4, 3, 7, 7) * 30).masked_fill(torch.ones(7, 7, dtype=torch.bool).triu(1),
                                                   float("-inf")).requires_grad_()
    grad = torch.randn(4, 3, 7, 7)
    ours = short_softmax(x)
    (ours * grad).sum().backward()
    ours_grad, x.grad = x.grad.clone(), None
    theirs = torch.softmax(x, dim=-1)
    (theirs * grad).sum().backward()
    assert torch.allclose(ours, theirs, atol=1e-6)
    assert torch.allclose(ours_grad, x.grad, atol=1e-5)


def test_dropout16_drops_p_of_every_lane_and_keeps_the_mean():
    torch.manual_seed(0)
    drop = Dropout16(0.1)
    out = drop(torch.ones(4001, 255))  # an odd size: the last 64-bit draw is partly used
    dropped = (out == 0).float()
    assert dropped.mean().item() == pytest.approx(0.1, abs=0.002)
    # Each of the four 16-bit lanes of a 64-bit draw drops at the same rate (a biased lane
    # would show here: plain random_() leaves the top lane's sign bit 0).
    lanes = dropped.flatten()[: 4000 * 255].view(-1, 4).mean(dim=0)
    assert torch.allclose(lanes, torch.full((4,), 0.1), atol=0.003)
    assert out.sum().item() == pytest.approx(4001 * 255, rel=0.01)
    assert out.unique().tolist() == [0.0, pytest.approx(1 / 0.9)]
    drop.eval()
    x = torch.randn(5, 5)
    assert drop(x) is x

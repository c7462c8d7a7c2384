"""The rules' optimizer: LeanAdam's short path gives exactly torch.optim.Adam(fused=True)'s
parameters and state; everything outside the plain case goes through Adam.step."""

from __future__ import annotations

import copy

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from spikebench.harness.optim import LeanAdam, adam


def _params(seed: int, shapes) -> list[torch.nn.Parameter]:
    gen = torch.Generator().manual_seed(seed)
    return [torch.nn.Parameter(torch.randn(s, generator=gen)) for s in shapes]


def _run(opt_cls, shapes, steps: int, *, lr: float, weight_decay: float, skip: int | None,
         **kw):
    params = _params(0, shapes)
    opt = opt_cls(params, lr=lr, weight_decay=weight_decay, **kw)
    gen = torch.Generator().manual_seed(1)
    for step in range(steps):
        opt.zero_grad(set_to_none=True)
        for i, p in enumerate(params):
            if skip is not None and i == skip and step % 2:
                continue  # a parameter without a gradient in this step is not stepped
            p.grad = torch.randn(p.shape, generator=gen)
        opt.step()
    return params, opt


@settings(max_examples=25, deadline=None)
@given(shapes=st.lists(st.sampled_from([(3,), (4, 5), (1,), (7, 2, 3)]), min_size=1,
                       max_size=4),
       steps=st.integers(1, 6), lr=st.sampled_from([1e-3, 0.05]),
       weight_decay=st.sampled_from([0.0, 1e-4, 0.1]), skip=st.none() | st.integers(0, 3))
def test_short_path_equals_fused_adam_bit_for_bit(shapes, steps, lr, weight_decay, skip):
    ours, opt = _run(LeanAdam, shapes, steps, lr=lr, weight_decay=weight_decay, skip=skip)
    ref, ref_opt = _run(torch.optim.Adam, shapes, steps, lr=lr, weight_decay=weight_decay,
                        skip=skip, fused=True)
    for a, b in zip(ours, ref):
        assert torch.equal(a, b)
    for a, b in zip(ours, ref):
        sa, sb = opt.state[a], ref_opt.state[b]
        assert set(sa) == set(sb)
        for key in sa:
            assert sa[key].dtype == sb[key].dtype and torch.equal(sa[key], sb[key]), key


def test_state_dict_continues_in_torch_adam_and_back():
    params, opt = _run(LeanAdam, [(4, 5), (5,)], 3, lr=0.01, weight_decay=0.0, skip=None)
    twin = [torch.nn.Parameter(p.detach().clone()) for p in params]
    ref = torch.optim.Adam(twin, lr=0.01, fused=True)
    ref.load_state_dict(copy.deepcopy(opt.state_dict()))  # load_state_dict shares tensors
    for p, q in zip(params, twin):
        g = torch.full(p.shape, 0.5)
        p.grad, q.grad = g.clone(), g.clone()
    opt.step()
    ref.step()
    assert all(torch.equal(p, q) for p, q in zip(params, twin))
    back = LeanAdam([torch.nn.Parameter(p.detach().clone()) for p in params], lr=0.01)
    back.load_state_dict(copy.deepcopy(ref.state_dict()))
    assert back.state_dict()["state"][0]["step"] == 4


def test_hooks_closure_and_tensor_lr_take_adams_own_step():
    p = torch.nn.Parameter(torch.ones(3))
    opt = LeanAdam([p], lr=0.1)
    seen = []
    handle = opt.register_step_pre_hook(lambda o, args, kwargs: seen.append("hook"))
    p.grad = torch.ones(3)
    opt.step()
    handle.remove()
    assert seen == ["hook"]

    def closure():
        seen.append("closure")
        p.grad = torch.ones(3)
        return torch.tensor(1.0)

    assert float(opt.step(closure)) == 1.0 and seen[-1] == "closure"
    opt.param_groups[0]["lr"] = torch.tensor(0.1)
    assert not opt._plain()


def test_adam_is_the_lean_fused_optimizer_on_the_cpu():
    opt = adam([torch.nn.Parameter(torch.ones(2))], lr=1e-3, weight_decay=1e-4)
    assert isinstance(opt, LeanAdam) and opt.param_groups[0]["fused"]
    assert opt.param_groups[0]["weight_decay"] == 1e-4


@pytest.mark.parametrize("set_to_none", [True, False])
def test_zero_grad(set_to_none):
    p = torch.nn.Parameter(torch.ones(2))
    opt = LeanAdam([p], lr=0.1)
    p.grad = torch.ones(2)
    opt.zero_grad(set_to_none=set_to_none)
    assert (p.grad is None) if set_to_none else torch.equal(p.grad, torch.zeros(2))

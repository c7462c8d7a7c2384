"""The optimizer of every gradient-trained rule and of ``spikebench bench``: Adam, fused.

``torch.optim.Adam(fused=True)`` does the arithmetic of a step in one kernel over all
parameters, but its ``step`` still spends most of its time in Python (profiling hooks, grouping
tensors by device and dtype, scalar conversions): 0.3 ms of a 3 ms custom-engine train step
on 2 CPU cores, paid on every step of every trial by every backend. :class:`LeanAdam` is that
optimizer with the plain case taken straight to the same kernel (``torch._fused_adam_``), the
same state and the same arguments, so its results are bit for bit those of
``torch.optim.Adam(fused=True)`` (``tests/harness/test_optim.py``). Anything else — a closure,
step hooks, AMP grad scaling, a tensor learning rate, amsgrad, decoupled weight decay — goes
through ``torch.optim.Adam.step`` unchanged. It is a ``torch.optim.Adam``: ``state_dict``,
``param_groups`` and learning-rate schedulers work as usual.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch.optim import Adam

_FUSED_ADAM: Callable[..., None] | None = getattr(torch, "_fused_adam_", None)


class LeanAdam(Adam):
    """``torch.optim.Adam(fused=True)`` with a short path for the plain step (module docstring)."""

    def __init__(self, params: Iterable[Any], *, lr: float, weight_decay: float = 0.0) -> None:
        super().__init__(params, lr=lr, weight_decay=weight_decay, fused=True)

    def zero_grad(self, set_to_none: bool = True) -> None:
        """As ``Optimizer.zero_grad``; the default ``set_to_none`` without its profiling."""
        if not set_to_none:
            super().zero_grad(set_to_none=set_to_none)
            return
        for group in self.param_groups:
            for p in group["params"]:
                p.grad = None

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        fused = _FUSED_ADAM
        if closure is not None or fused is None or not self._plain():
            return Adam.step(self, closure)
        state = self.state
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            for p in params:
                if not state[p]:  # what Adam's _init_group creates for a fused step
                    state[p]["step"] = torch.zeros((), dtype=torch.float32, device=p.device)
                    state[p]["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state[p]["exp_avg_sq"] = torch.zeros_like(
                        p, memory_format=torch.preserve_format)
            steps = [state[p]["step"] for p in params]
            torch._foreach_add_(steps, 1)
            beta1, beta2 = group["betas"]
            fused(params, [p.grad for p in params], [state[p]["exp_avg"] for p in params],
                  [state[p]["exp_avg_sq"] for p in params], [], steps, amsgrad=False,
                  lr=group["lr"], beta1=beta1, beta2=beta2,
                  weight_decay=group["weight_decay"], eps=group["eps"], maximize=False,
                  grad_scale=None, found_inf=None)
        return None

    def _plain(self) -> bool:
        """Whether a step is the plain case the short path computes exactly as Adam does."""
        if _FUSED_ADAM is None or _has_hooks(self):
            return False
        if getattr(self, "grad_scale", None) is not None or getattr(self, "found_inf", None) \
                is not None:
            return False
        for group in self.param_groups:
            if (group["amsgrad"] or group["maximize"] or group["capturable"]
                    or group["differentiable"] or group.get("decoupled_weight_decay", False)
                    or isinstance(group["lr"], torch.Tensor)
                    or any(isinstance(b, torch.Tensor) for b in group["betas"])):
                return False
            if any(p.grad is not None and p.grad.is_sparse for p in group["params"]):
                return False
        return True


# torch wraps an optimizer class's ``step`` in its profiling/hook wrapper unless it is marked
# as wrapped; the short path checks for hooks itself and the fallback calls the wrapped
# ``Adam.step``, which runs them.
LeanAdam.step.hooked = True  # type: ignore[attr-defined]


def _has_hooks(opt: torch.optim.Optimizer) -> bool:
    from torch.optim import optimizer as _optimizer

    return bool(opt._optimizer_step_pre_hooks or opt._optimizer_step_post_hooks
                or getattr(_optimizer, "_global_optimizer_pre_hooks", None)
                or getattr(_optimizer, "_global_optimizer_post_hooks", None))


def adam(params: Iterable[Any], *, lr: float, weight_decay: float = 0.0) -> torch.optim.Adam:
    """The rules' optimizer: :class:`LeanAdam` (fused Adam) where this torch supports the fused
    kernel on the parameters' device, else ``torch.optim.Adam(foreach=True)``.

    Fused Adam's results differ from the default per-tensor Adam by rounding (about one ulp
    per step).
    """
    params = list(params)
    try:
        return LeanAdam(params, lr=lr, weight_decay=weight_decay)
    except (RuntimeError, TypeError, ValueError):  # fused Adam unsupported here
        return Adam(params, lr=lr, weight_decay=weight_decay, foreach=True)

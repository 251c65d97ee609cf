"""Optimiser and learning-rate schedule of a run (DRM §4.1: Adam, warm-up, linear decay to 0).

The schedule multiplies the peak learning rate by :class:`WarmupLinearDecay`: ``(s + 1) / W`` for
the first ``W`` steps (warm-up), then ``(T - s) / (T - W)`` down to 0 after step ``T - 1``. It is a
callable object, not a function, so ``LambdaLR.state_dict`` saves its lengths and a resumed run
keeps the schedule it started with. A run resumed with a restarted optimiser warms up again over
``W`` steps from its resume step ``R``, scaling the factor by ``(s - R + 1) / W``: Adam's first
steps after its moments restart from zero move every weight by about the full learning rate.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

__all__ = ["WarmupLinearDecay", "build_optimizer", "build_scheduler", "rewarm", "schedule_lengths"]


@dataclass
class WarmupLinearDecay:
    """Learning-rate factor of step ``s`` (0-based): linear warm-up, then linear decay to 0."""

    # Steps of warm-up (0: start at the peak).
    warmup_steps: int
    # Steps of the whole run.
    total_steps: int
    # Step at which the optimiser restarted (a second warm-up from there); None: never.
    rewarm_from: int | None = None

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            factor = (step + 1) / self.warmup_steps
        else:
            factor = max(0.0, (self.total_steps - step) / max(1, self.total_steps - self.warmup_steps))
        if self.rewarm_from is not None and self.warmup_steps:
            factor *= min(1.0, (step - self.rewarm_from + 1) / self.warmup_steps)
        return factor


def schedule_lengths(schedule, sizes: Sequence[int | None], counts: Sequence[int], world_size: int) -> tuple[int, int]:
    """``(total_steps, warmup_steps)`` of a :class:`~mp3d_ros.training.config.ScheduleConfig`.

    An epoch is one pass over dataset ``schedule.epoch_dataset``, which gives ``counts[d]`` images
    per process per step; an endless stream (size None) has no epochs.
    """
    d = schedule.epoch_dataset
    if sizes[d] is None and (schedule.epochs or schedule.warmup_epochs):
        raise ValueError(f"schedule: dataset {d} is an endless scene stream, which has no epochs: "
                         "give schedule.steps and schedule.warmup_steps")
    steps_per_epoch = None if sizes[d] is None else math.ceil(sizes[d] / (counts[d] * world_size))
    total = schedule.steps or math.ceil(schedule.epochs * steps_per_epoch)
    warmup = schedule.warmup_steps or (round(schedule.warmup_epochs * steps_per_epoch)
                                        if schedule.warmup_epochs else 0)
    if warmup >= total:
        per_epoch = f", {steps_per_epoch} steps per epoch" if steps_per_epoch else ""
        raise ValueError(f"schedule: warm-up of {warmup} steps is not shorter than the run "
                         f"({total} steps{per_epoch})")
    return total, warmup


def build_optimizer(model: nn.Module, optim) -> torch.optim.Optimizer:
    """Adam (L2 weight decay, as the papers) or AdamW (decoupled) over every parameter; the fused
    CUDA kernels when every parameter is on a CUDA device (a small network's step is bound by
    kernel launches, and the fused update is a few launches instead of several per tensor)."""
    kinds = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}
    parameters = list(model.parameters())
    fused = bool(parameters) and all(p.is_cuda for p in parameters)
    return kinds[optim.name](parameters, lr=optim.lr, betas=tuple(optim.betas), eps=optim.eps,
                             weight_decay=optim.weight_decay, fused=fused or None)


def build_scheduler(optimizer: torch.optim.Optimizer, total_steps: int,
                    warmup_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """``LambdaLR`` with :class:`WarmupLinearDecay`, stepped once per optimisation step."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, WarmupLinearDecay(warmup_steps, total_steps))


def rewarm(scheduler: torch.optim.lr_scheduler.LambdaLR) -> None:
    """Warm ``scheduler`` up again from its current step (after an optimiser restart), and set the
    optimiser's learning rates to the step's factor at once (``load_state_dict`` leaves them at
    the fresh scheduler's step-0 values)."""
    schedule = scheduler.lr_lambdas[0]
    schedule.rewarm_from = scheduler.last_epoch
    for group, base_lr in zip(scheduler.optimizer.param_groups, scheduler.base_lrs):
        group["lr"] = base_lr * schedule(scheduler.last_epoch)

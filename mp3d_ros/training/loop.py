"""The trainer: one process or many (``torchrun``, DDP), from a :class:`TrainConfig` to checkpoints.

Every step: a batch mixed by ratio (:class:`~mp3d_ros.training.data.MixedBatchSampler`), normalised
on the device, the forward pass under autocast (bf16, or fp16 with loss scaling) in channels_last,
the losses (:func:`mp3d_ros.training.losses.compute_losses`) in float32, backward (DDP averages the
gradients), the global gradient norm (clipped when configured; a step with a non-finite norm is
skipped and counted), the optimiser and the warm-up / linear-decay schedule.

Rank 0 shows a tqdm bar with the loss terms and images/s, and logs every ``log_every`` steps the
loss terms (averaged over processes), learning rate, gradient norm and images/s to TensorBoard and
to ``<out_dir>/metrics.jsonl``; validation metrics likewise. Checkpoints go to
``<out_dir>/checkpoints/step_<N>.pt`` every ``checkpoint_every`` steps and at the end
(:mod:`mp3d_ros.training.state`), and a run resumed from one continues bit for bit (CPU; GPU with
``deterministic: true``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
import yaml
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from tqdm import tqdm

from mp3d_ros.config import config_to_dict
from mp3d_ros.model.codec.targets import TargetMaps
from mp3d_ros.model.network import NetworkOutput, build_network
from mp3d_ros.training import state
from mp3d_ros.training.config import TrainConfig, model_config, normalization
from mp3d_ros.training.data import (
    Batch,
    MixedBatchSampler,
    TrainingDataset,
    batch_counts,
    collate_batch,
    load_sources,
)
from mp3d_ros.training.distributed import (
    DistContext,
    all_gather_objects,
    barrier,
    init_distributed,
    mean_over_processes,
    shutdown_distributed,
)
from mp3d_ros.training.losses import compute_losses
from mp3d_ros.training.optim import build_optimizer, build_scheduler, rewarm, schedule_lengths
from mp3d_ros.training.scene_stream import render_scene_images
from mp3d_ros.training.validation import load_validation_set, normalize_images, validate

__all__ = ["RunProgress", "TrainResult", "Trainer", "train"]

LOG = logging.getLogger("mp3d_ros.training")


@dataclass
class TrainResult:
    """What a run ended with (rank 0 has the logs; every rank has the step)."""

    # Optimisation steps done.
    step: int
    # The last checkpoint written by this run (None if it wrote none).
    checkpoint: Path | None
    # The last logged loss terms (averaged over processes and the log interval).
    losses: dict[str, float] = field(default_factory=dict)
    # The last validation metrics.
    validation: dict[str, float] = field(default_factory=dict)
    # The run stopped at its time limit before the last step (resume from ``checkpoint``).
    stopped_early: bool = False


@dataclass
class RunProgress:
    """What a run accumulates between steps: its logger, its result so far, and the loss terms,
    gradient norm and non-finite flag summed over the current logging interval."""

    logger: _RunLogger
    result: TrainResult
    sums: torch.Tensor | None = None
    interval_steps: int = 0
    interval_s: float = 0.0
    skipped: int = 0


def _amp(config: TrainConfig, device: torch.device) -> tuple[torch.dtype | None, bool]:
    """``(autocast dtype or None, loss scaling on)``: bf16 where the GPU has it, else fp16 + scaler."""
    if device.type != "cuda" or config.amp == "none":
        if config.amp != "none":
            LOG.info("amp: %s applies to CUDA; this %s run uses float32", config.amp, device.type)
        return None, False
    if config.amp == "bf16" and torch.cuda.is_bf16_supported():
        return torch.bfloat16, False
    if config.amp == "bf16":
        LOG.warning("amp: this GPU has no bf16; using fp16 with loss scaling")
    return torch.float16, True


def _set_determinism(config: TrainConfig, device: torch.device) -> None:
    if config.deterministic:
        # cuBLAS needs a fixed workspace to be deterministic (set before its first use).
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    elif device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed input size: autotuned kernels pay off
        torch.set_float32_matmul_precision("high")


class Trainer:
    """One process of a run. Build with the config and the process context, then :meth:`run`."""

    def __init__(self, config: TrainConfig, context: DistContext, resume: str | Path | None = None,
                 restart_optimizer: bool = False) -> None:
        self.config, self.context = config, context
        self.restart_optimizer = restart_optimizer
        resume_path = state.find_resume_checkpoint(resume) if resume is not None else None
        self.model_cfg = model_config(config)
        self.normalization = normalization(config)
        self.out_dir = Path(config.out_dir)
        device = context.device
        _set_determinism(config, device)
        self.amp_dtype, scaling = _amp(config, device)
        self.scaler = torch.amp.GradScaler(device.type, enabled=scaling)

        self.sources = load_sources(config.datasets, config.seed)
        sizes = [s.size for s in self.sources]
        self.counts = batch_counts([d.ratio for d in config.datasets], config.batch_size)
        self.total_steps, warmup = schedule_lengths(config.schedule, sizes, self.counts, context.world_size)
        self.validation_set = load_validation_set(config.validation) if context.is_main else None

        torch.manual_seed(config.seed)  # reproducible initial weights (DDP then copies rank 0's to all)
        network = build_network(self.model_cfg)
        state.load_init_weights(network, config.init, self.model_cfg)
        memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
        self.network = network.to(device=device, memory_format=memory_format)
        self.optimizer = build_optimizer(self.network, config.optim)
        self.scheduler = build_scheduler(self.optimizer, self.total_steps, warmup)
        self.step = 0
        self.last_validation: dict[str, float] = {}
        if resume_path is not None:
            self._resume(resume_path)
        self.model = self.network
        if context.distributed:
            self.model = DistributedDataParallel(
                self.network, device_ids=[device.index] if device.type == "cuda" else None)
        self.dataset = TrainingDataset(self.sources, self.model_cfg, config.augment, config.targets, config.seed,
                                       self.normalization.mean)
        self.sampler = MixedBatchSampler(sizes, self.counts, config.seed, context.rank, context.world_size,
                                         self.step, self.total_steps)
        if context.is_main:
            LOG.info("%d processes x %d images per step (%s), %d steps (%d warm-up), from step %d",
                     context.world_size, config.batch_size,
                     ", ".join(f"{n} {s.name}" for n, s in zip(self.counts, self.sources)),
                     self.total_steps, self.scheduler.lr_lambdas[0].warmup_steps, self.step)

    # ------------------------------------------------------------------------- checkpoints

    def _resume(self, path: Path) -> None:
        checkpoint = state.load_resume_checkpoint(path, self.config, self.model_cfg, self.context.world_size,
                                                  self.restart_optimizer)
        self.network.load_state_dict(checkpoint.model_state, strict=True)
        restarted = checkpoint.optimizer_state is None or self.restart_optimizer
        if not restarted:
            self.optimizer.load_state_dict(checkpoint.optimizer_state)
        elif self.context.is_main:
            LOG.warning("resuming %s with a restarted optimiser: its moments start again from zero and "
                        "the learning rate warms up again (weights, step, schedule and random states "
                        "are the checkpoint's)", path)
        self.scheduler.load_state_dict(checkpoint.scheduler_state)
        if restarted:
            rewarm(self.scheduler)
        if checkpoint.extra.get("scaler"):  # empty when saved by a run without loss scaling
            self.scaler.load_state_dict(checkpoint.extra["scaler"])
        self.total_steps = self.scheduler.lr_lambdas[0].total_steps
        self.step = checkpoint.step
        self.last_validation = dict(checkpoint.extra.get("validation", {}))
        state.set_rng_state(checkpoint.extra["rng"][self.context.rank])
        if self.context.is_main:
            LOG.info("resumed from %s at step %d of %d", path, self.step, self.total_steps)

    def _save(self) -> Path:
        """Every process's RNG state to rank 0, which writes the checkpoint."""
        rng = all_gather_objects(self.context, state.get_rng_state())
        path = state.checkpoint_path(self.out_dir, self.step)
        if self.context.is_main:
            extra = {"world_size": self.context.world_size, "rng": rng, "scaler": self.scaler.state_dict(),
                     "validation": self.last_validation}
            checkpoint = state.training_checkpoint(
                self.network, self.model_cfg, self.normalization.to_dict(), self.step, self.optimizer,
                self.scheduler, self.config, extra)
            state.write_checkpoint(self.out_dir, checkpoint, self.config.keep_checkpoints)
        return path

    # ------------------------------------------------------------------------- one step

    def _autocast(self) -> contextlib.AbstractContextManager:
        device_type = self.context.device.type
        return torch.autocast(device_type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None)

    def train_step(self, batch) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """Forward, losses, backward, clipping, optimiser and schedule; ``(terms, grad norm)``."""
        batch = self.prepared(batch.to(self.context.device))
        images = normalize_images(batch.images, self.normalization, self.config.channels_last)
        with self._autocast():
            outputs = self.model(images)
        outputs = NetworkOutput(*(o.float() if o is not None else None for o in outputs))
        terms = compute_losses(outputs, batch.targets, self.model_cfg, self.config.loss)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(terms["total"]).backward()
        self.scaler.unscale_(self.optimizer)
        limit = self.config.optim.grad_clip_norm or math.inf
        grad_norm = torch.nn.utils.clip_grad_norm_(self.network.parameters(), limit)
        # Gradients are averaged over processes already, so every process takes the same decision.
        if self.scaler.is_enabled() or bool(torch.isfinite(grad_norm)):
            self.scaler.step(self.optimizer)  # the scaler itself skips fp16 steps with inf gradients
        self.scaler.update()
        self.scheduler.step()
        return {k: v.detach() for k, v in terms.items()}, grad_norm.detach()

    def prepared(self, batch: Batch) -> Batch:
        """``batch`` (on the device) ready to train on: its ``scenes`` images rendered (padded
        with the normalisation's mean outside the letterboxed content, as at inference) and its
        target maps drawn from the person tables. A prepared batch comes back as it is, so a
        batch shared by several trainers (``mp3d-study``) is prepared once."""
        if isinstance(batch.targets, TargetMaps):
            return batch
        targets = self.dataset.generator.maps(batch.targets)
        slots = [k for k, job in enumerate(batch.render) if job is not None]
        if not slots:
            return replace(batch, targets=targets)
        images = batch.images
        if not images.numel():  # nothing but scenes: no images came (collate_batch)
            width, height = self.model_cfg.input_size
            images = torch.zeros((len(batch.render), height, width, 3), dtype=torch.uint8, device=images.device)
        else:
            images = images.clone()  # the caller's batch stays as it was (a test reuses one)
        images[slots] = render_scene_images([batch.render[k] for k in slots], images.device,
                                            self.normalization.mean)
        return replace(batch, images=images, targets=targets, render=())

    # ------------------------------------------------------------------------- the run

    def loader(self) -> DataLoader:
        """Batches of this process from the current step to the end (pinned on CUDA)."""
        workers = self.config.workers
        return DataLoader(
            self.dataset, batch_sampler=self.sampler, collate_fn=collate_batch, num_workers=workers,
            pin_memory=self.context.device.type == "cuda", persistent_workers=False,
            prefetch_factor=4 if workers else None,
            # Its own generator, so starting workers never draws from the global torch RNG.
            generator=torch.Generator().manual_seed(self.config.seed),
        )

    def run(self, stop_after_s: float | None = None) -> TrainResult:
        """Train from the current step to the end, or until the first step that ends
        ``stop_after_s`` seconds after the start (then saving a checkpoint there to resume from);
        returns what the run ended with."""
        progress = self.start_progress()
        deadline = None if stop_after_s is None else time.monotonic() + stop_after_s
        try:
            tick = time.perf_counter()
            for batch in self.loader():
                self.advance(batch, progress, tick)
                tick = time.perf_counter()
                if deadline is not None and self.step < self.total_steps and self._past(deadline):
                    if self.step % self.config.checkpoint_every:  # else _periodic just saved this step
                        progress.result.checkpoint = self._save()
                    progress.result.stopped_early = True
                    break
        finally:
            progress.logger.close()
        progress.result.step = self.step
        return progress.result

    def _past(self, deadline: float) -> bool:
        """Whether rank 0's clock is past ``deadline`` (every process takes rank 0's decision)."""
        late = torch.tensor([float(time.monotonic() > deadline)], device=self.context.device)
        return bool(mean_over_processes(self.context, late * (self.context.rank == 0)) > 0)

    def start_progress(self) -> RunProgress:
        """The logger and running totals of a run starting at the current step."""
        logger = _RunLogger(self.config, self.context, self.total_steps, self.step)
        return RunProgress(logger, TrainResult(self.step, None, validation=self.last_validation))

    def advance(self, batch, progress: RunProgress, started_s: float) -> None:
        """One training step on ``batch``, then logging, validation and checkpoints when due.

        ``started_s`` (``time.perf_counter``) is when fetching this batch began, so the logged
        images/s counts loading as well as training.
        """
        lr = self.optimizer.param_groups[0]["lr"]
        terms, grad_norm = self.train_step(batch)
        self.step += 1
        values = torch.stack([*terms.values(), grad_norm, (~torch.isfinite(grad_norm)).float()])
        progress.sums = values if progress.sums is None else progress.sums + values
        progress.interval_steps += 1
        progress.interval_s += time.perf_counter() - started_s  # not validation or saving
        progress.logger.advance()
        if self.step % self.config.log_every == 0 or self.step == self.total_steps:
            means = mean_over_processes(self.context, progress.sums).cpu() / progress.interval_steps
            images = progress.interval_steps * self.config.batch_size * self.context.world_size
            progress.skipped += round(float(means[-1]) * progress.interval_steps)
            progress.result.losses = {name: float(v) for name, v in zip(terms, means)}
            progress.logger.log_train(self.step, progress.result.losses, lr, float(means[-2]),
                                      images / progress.interval_s, progress.skipped)
            progress.sums, progress.interval_steps, progress.interval_s = None, 0, 0.0
        self._periodic(progress.result, progress.logger)

    def _periodic(self, result: TrainResult, logger: _RunLogger) -> None:
        """Validation and checkpoint when due."""
        at_end = self.step == self.total_steps
        every = self.config.validate_every
        if self.config.validation.kind and ((every and self.step % every == 0) or at_end):
            if self.context.is_main:
                self.last_validation = validate(
                    self.network, self.validation_set, self.model_cfg, self.normalization,
                    self.context.device, self.config.validation.batch_size, self._autocast,
                    self.config.channels_last)
                logger.log_validation(self.step, self.last_validation)
            barrier(self.context)
            result.validation = self.last_validation
        if self.step % self.config.checkpoint_every == 0 or at_end:
            result.checkpoint = self._save()


class _RunLogger:
    """Rank 0's progress bar, TensorBoard writer and ``metrics.jsonl``; silent on other ranks."""

    def __init__(self, config: TrainConfig, context: DistContext, total_steps: int, step: int) -> None:
        self.active = context.is_main
        self.bar = tqdm(total=total_steps, initial=step, desc="mp3d-train", unit="step",
                        disable=not (self.active and config.progress), dynamic_ncols=True)
        self.writer = None
        self.metrics = None
        if not self.active:
            return
        out_dir = Path(config.out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "config.yaml").write_text(yaml.safe_dump(config_to_dict(config), sort_keys=False))
        self.metrics = (out_dir / "metrics.jsonl").open("a", encoding="utf-8")
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            LOG.warning("tensorboard is not installed (pip install tensorboard): logging to "
                        "metrics.jsonl only")
            return
        self.writer = SummaryWriter(config.log_dir or str(out_dir / "tensorboard"), purge_step=step + 1)

    def advance(self) -> None:
        self.bar.update(1)

    def _write(self, record: dict[str, Any]) -> None:
        self.metrics.write(json.dumps(record) + "\n")
        self.metrics.flush()

    def log_train(self, step: int, losses: dict[str, float], lr: float, grad_norm: float,
                  images_per_s: float, skipped: int) -> None:
        if not self.active:
            return
        shown = {k: f"{v:.3g}" for k, v in losses.items() if k == "total" or v}
        self.bar.set_postfix({**shown, "img/s": f"{images_per_s:.1f}"}, refresh=False)
        self._write({"step": step, "lr": lr, "loss": losses, "grad_norm": grad_norm,
                     "images_per_s": images_per_s, "skipped_steps": skipped})
        if self.writer is not None:
            for name, value in losses.items():
                self.writer.add_scalar(f"loss/{name}", value, step)
            self.writer.add_scalar("lr", lr, step)
            self.writer.add_scalar("grad_norm", grad_norm, step)
            self.writer.add_scalar("images_per_s", images_per_s, step)
            self.writer.add_scalar("skipped_steps", skipped, step)

    def log_validation(self, step: int, metrics: dict[str, float]) -> None:
        if not self.active:
            return
        LOG.info("validation at step %d: %s", step, ", ".join(f"{k} {v:.1f}" for k, v in metrics.items()))
        self._write({"step": step, "validation": metrics})
        if self.writer is not None:
            for name, value in metrics.items():
                self.writer.add_scalar(f"val/{name}", value, step)

    def close(self) -> None:
        self.bar.close()
        if self.writer is not None:
            self.writer.close()
        if self.metrics is not None:
            self.metrics.close()


def train(config: TrainConfig, resume: str | Path | None = None, restart_optimizer: bool = False,
          stop_after_s: float | None = None) -> TrainResult:
    """Run (or resume) training in this process; joins the process group when torchrun started
    several and leaves it at the end. See :meth:`Trainer.run` for ``stop_after_s`` and
    :func:`mp3d_ros.training.state.load_resume_checkpoint` for ``restart_optimizer``."""
    context = init_distributed(config.device)
    try:
        return Trainer(config, context, resume, restart_optimizer).run(stop_after_s)
    finally:
        shutdown_distributed()

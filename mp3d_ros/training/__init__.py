"""Training of the papers' network (``mp3d-train``): config, mixed-dataset batches, the DDP loop.

- :mod:`mp3d_ros.training.config`: the training config (YAML -> frozen dataclasses);
- :mod:`mp3d_ros.training.data`: datasets -> augmented images + targets, the ratio batch sampler;
- :mod:`mp3d_ros.training.optim`: Adam / AdamW and the warm-up + linear-decay schedule;
- :mod:`mp3d_ros.training.distributed`: one process, or many started by ``torchrun``;
- :mod:`mp3d_ros.training.state`: checkpoints of a run (resume checks, RNG states, initial weights);
- :mod:`mp3d_ros.training.validation`: periodic validation with the MuPoTS / Panoptic evaluator;
- :mod:`mp3d_ros.training.loop`: the trainer.
"""

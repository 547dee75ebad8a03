"""tinylm.trainer: the training loop, its config, schedules and checkpoints.

    config = tinylm.TrainConfig(output_dir="out", learning_rate=2e-4, max_steps=200)
    tinylm.Trainer(model, tok, train, config, eval_data=val).fit()

See docs/training.md.
"""
from tinylm.trainer.config import TrainConfig
from tinylm.trainer.trainer import Trainer, TrainOutput

__all__ = ["Trainer", "TrainConfig", "TrainOutput"]

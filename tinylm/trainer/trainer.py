"""tinylm.Trainer: the training loop (LoRA or full fine-tuning).

One step = the micro-batches of one optimizer update. Their losses are
weighted by labelled tokens over the whole accumulated batch, so a step of
4 micro-batches of 2 rows computes the gradient of one batch of 8 rows.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
import time
import warnings
from typing import NamedTuple

from tqdm import tqdm

from tinylm.atomic import atomic_write_text, remove_stale, write_folder
from tinylm.data import Dataset
from tinylm.distill import DistillConfig, TeacherCache, check_shared_tokenizer
from tinylm.distill.on_policy import on_policy_batch, takes_on_policy
from tinylm.errors import NumericError, UnsupportedError
from tinylm.optim import AdamW, clip_grad_norm
from tinylm.trainer import checkpointing as ckpt
from tinylm.trainer import qat
from tinylm.trainer.batches import BatchStream, input_count, label_count
from tinylm.trainer.config import TrainConfig
from tinylm.trainer.evaluation import evaluate
from tinylm.trainer.interrupt import StopRequest
from tinylm.trainer.metrics import CURVE_NAME, MetricsLog, plot_loss_curve
from tinylm.trainer.schedule import lr_factor, warmup_steps
from tinylm.trainer.state import (RNG_NAME, STATE_NAME, TrainerState, capture_rng, restore_rng, seed_everything,
                                  state_from, state_json)

BEST_NAME = "best"
# Settings that do not change what a run computes: resuming with other
# values still continues exactly.
_BOOKKEEPING = {"output_dir", "resume_from_checkpoint", "disable_tqdm", "logging_steps", "eval_steps", "save_steps",
                "save_total_limit", "eval_batch_size"}


class TrainOutput(NamedTuple):
    """What fit() returns (as transformers' Trainer.train())."""
    global_step: int
    training_loss: float      # mean step loss of this fit() call
    metrics: dict


class Trainer:
    """Fine-tunes `model` on `train_data` with AdamW, a warmup schedule,
    gradient accumulation, clipping, evaluation and checkpoints.

    model: a tinylm.Model. With an active LoRA adapter (model.add_lora) the
      adapter is trained and saved in PEFT format; without one, every
      unfrozen parameter is trained and checkpoints are full models.
    tok: the tokenizer the data was made with; kept for recipes (the loop
      itself reads token ids from the batches).
    train_data / eval_data: a tinylm.data.Dataset, or any iterable of batch
      dicts (input_ids, labels, optional attention_mask, position_ids);
      only a Dataset guarantees that a resumed run sees exactly the batches
      an uninterrupted one would (see docs/training.md).
    config: a TrainConfig, a dict of its fields, or a YAML file's path.
    teacher: for distillation, a tinylm.Model on the same tokenizer (online:
      it runs forward only, on each micro-batch, in whatever storage and with
      whatever adapter it has), or a tinylm.distill.TeacherCache made from
      train_data (offline: its top-k is read by each batch's row ids; it is
      checked against the data, tok and the model's vocabulary); the loss is
      config.distill's mix of CE and KD (tinylm.distill.DistillConfig; its
      defaults when not set).
    teacher_tok: the teacher's tokenizer, checked id by id against tok.
    config.qat (tinylm.quant.config.QATConfig) trains the projections
    through the quantizer of the file to ship (docs/qat.md); with its
    self_distill the float model is the teacher.
    """

    def __init__(self, model, tok, train_data, config, eval_data=None, teacher=None, teacher_tok=None):
        if isinstance(config, dict):
            config = TrainConfig.from_dict(config)
        elif isinstance(config, (str, os.PathLike)):
            config = TrainConfig.from_yaml(config)
        if not isinstance(config, TrainConfig):
            raise TypeError(f"config must be a TrainConfig, a dict or a YAML path, got {type(config).__name__}")
        self.model, self.tok, self.config = model, tok, config
        self.train_data, self.eval_data = train_data, eval_data
        if config.qat is not None:
            teacher = qat.prepare(model, config.qat, teacher)
        self.teacher = teacher
        if teacher is not None:
            if teacher is model:
                raise ValueError("the teacher must be another model than the one trained")
            if config.distill is None:
                config.distill = DistillConfig()
            if isinstance(teacher, TeacherCache):
                self._check_cache(teacher, train_data)
            else:
                if teacher_tok is not None and tok is not None:
                    check_shared_tokenizer(tok, teacher_tok)
                teacher.eval()  # forward only: no dropout, nothing kept for backward
        elif config.distill is not None:
            raise ValueError("TrainConfig.distill is set but no teacher was given to the Trainer")
        self._check_trainable()
        self.optimizer = AdamW(model, lr=config.learning_rate, betas=(config.adam_beta1, config.adam_beta2),
                               eps=config.adam_epsilon, weight_decay=config.weight_decay)
        self.state = TrainerState()
        self.metrics = MetricsLog(config.output_dir)
        self._rng = None                # the random state as of the last completed step
        self._last_saved = None
        self._updating = False          # between the optimizer update and recording its step
        self._total = self._warmup = 0
        self._lr = 0.0                  # the learning rate of the last completed step
        self._step_terms = None         # {"ce", "kd"} of the last step when distilling

    def _check_cache(self, cache: TeacherCache, train_data) -> None:
        if not isinstance(train_data, Dataset):
            raise TypeError(f"an offline teacher cache ({cache.path}) is read by dataset row: train_data must be the "
                            f"tinylm.data.Dataset it was made from, got {type(train_data).__name__}")
        if self.config.distill.lmbda > 0:
            raise ValueError(f"distill.lmbda={self.config.distill.lmbda}: on-policy batches need a teacher model to "
                             f"score the student's samples, and {cache.path} is an offline cache")
        k = self.config.distill.top_k
        if k is not None and k > cache.k:
            raise ValueError(f"distill.top_k={k} but the teacher cache {cache.path} holds the top {cache.k} ids")
        cache.check(train_data, tokenizer=self.tok, vocab_size=int(self.model.config["vocab_size"]))

    def _check_trainable(self) -> None:
        trainable = self.model.trainable_names()
        if not trainable:
            raise ValueError("the model has no trainable parameters (everything is frozen)")
        adapter = self.model.active_adapter
        if adapter is not None:
            others = [n for n in trainable if f".lora_A.{adapter}." not in n and f".lora_B.{adapter}." not in n]
            if others:
                raise UnsupportedError(f"parameter {others[0]} is trainable besides adapter {adapter!r}: training "
                                       f"base weights with an adapter (PEFT's modules_to_save) is not supported")

    # ------------------------------------------------------------------ fit
    def fit(self) -> TrainOutput:
        """Trains to max_steps (or num_train_epochs) and returns TrainOutput.
        Ctrl-C stops after the current step with a checkpoint saved, then
        raises KeyboardInterrupt; a NaN or inf loss raises NumericError and
        writes nothing."""
        cfg = self.config
        os.makedirs(cfg.output_dir, exist_ok=True)
        remove_stale(cfg.output_dir)  # what a killed run was writing or deleting
        resume = self._resume_folder()
        if resume:
            self._load(resume)
        else:
            seed_everything(cfg.seed)
            self._rng = capture_rng(self.model)
            self.metrics.truncate_after(0)  # a fresh run starts a fresh log
        stream = BatchStream(self.train_data, cfg.batch_size, cfg.seed, self.state.data_position)
        self._total = self._total_steps(stream)
        self._warmup = warmup_steps(cfg.warmup_steps, cfg.warmup_ratio, self._total)
        first_step, losses, started = self.state.global_step, [], time.perf_counter()
        with StopRequest() as stop, tqdm(total=self._total, initial=first_step, desc="train", unit="step",
                                         disable=cfg.disable_tqdm, dynamic_ncols=True) as bar:
            try:
                self._loop(stream, stop, bar, losses)
            except KeyboardInterrupt:
                self._save_on_interrupt()
                raise
        if self._last_saved != self.state.global_step:
            self._save_checkpoint()
        plot_loss_curve(self.metrics.read(), os.path.join(cfg.output_dir, CURVE_NAME))
        runtime = time.perf_counter() - started
        metrics = {"train_loss": sum(losses) / len(losses) if losses else math.nan, "train_runtime": runtime,
                   "epoch": self.state.epoch, "global_step": self.state.global_step}
        return TrainOutput(self.state.global_step, metrics["train_loss"], metrics)

    def _loop(self, stream: BatchStream, stop: StopRequest, bar, losses: list) -> None:
        cfg = self.config
        window = {}   # sums over the steps since the last record
        while self.state.global_step < self._total:
            t0 = time.perf_counter()
            loss, grad_norm, tokens = self._train_step(stream)
            seconds = time.perf_counter() - t0
            step = self.state.global_step
            losses.append(loss)
            terms = self._step_terms.items() if self._step_terms else ()
            for key, value in (("loss", loss), ("steps", 1), ("tokens", tokens), ("seconds", seconds), *terms):
                window[key] = window.get(key, 0.0) + value
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.4f}", lr=f"{self._lr:.2e}", tok_s=f"{tokens / seconds:.0f}")
            last = step == self._total
            record = {}
            if last or (cfg.logging_steps and step % cfg.logging_steps == 0):
                record.update(loss=window["loss"] / window["steps"], lr=self._lr, grad_norm=grad_norm,
                              tokens=self.state.num_input_tokens_seen,
                              tokens_per_s=window["tokens"] / window["seconds"])
                record.update({k: window[k] / window["steps"] for k in ("ce", "kd") if k in window})
                window = {}
            if self.eval_data is not None and (last or (cfg.eval_steps and step % cfg.eval_steps == 0)):
                record.update(self._evaluate_and_keep_best())
            if record:
                self.metrics.append({"step": step, "epoch": round(self.state.epoch, 6), **record})
            if not last and cfg.save_steps and step % cfg.save_steps == 0:
                self._save_checkpoint()
            if stop.requested:
                raise KeyboardInterrupt

    def _train_step(self, stream: BatchStream) -> tuple[float, float, int]:
        """One optimizer step; returns (loss, grad norm before clipping, input tokens)."""
        cfg, model = self.config, self.model
        step = self.state.global_step + 1
        if cfg.qat is not None:
            qat.at_step(model, cfg.qat, step)
        micro = stream.next_step(cfg.gradient_accumulation_steps)
        on_policy = [False] * len(micro)
        if self.teacher is not None and cfg.distill.lmbda > 0:
            for i, batch in enumerate(micro):
                on_policy[i], seed = takes_on_policy(cfg.distill.lmbda, cfg.seed, step, i)
                if on_policy[i]:
                    micro[i] = on_policy_batch(model, batch, temperature=cfg.distill.generation_temperature,
                                               seed=seed, max_new_tokens=cfg.distill.max_new_tokens)
        counts = [label_count(b) for b in micro]
        if sum(counts) == 0:
            raise ValueError(f"step {step}: its {len(micro)} micro-batch(es) have no labelled token (every label "
                             f"is -100); check truncation / train_on_prompt")
        loss = self._accumulate(micro, counts, step, on_policy)
        try:
            grad_norm = clip_grad_norm(model, cfg.max_grad_norm or None)  # None: measure only
        except NumericError:
            raise self._numeric_stop(step, "the gradient norm is not finite") from None
        lr = cfg.learning_rate * lr_factor(cfg.lr_scheduler_type, step - 1, self._warmup, self._total)
        self._updating = True
        self.optimizer.lr = lr
        self.optimizer.step()
        self._lr = lr
        self.state.global_step = step
        self.state.data_position = stream.position
        self.state.epoch = stream.epoch_float()
        tokens = sum(input_count(b) for b in micro)
        self.state.num_input_tokens_seen += tokens
        self._rng = capture_rng(model)
        self._updating = False
        return loss, grad_norm, tokens

    def _accumulate(self, micro: list[dict], counts: list[int], step: int, on_policy: list[bool]) -> float:
        """Gradient of the mean loss over every labelled token of the step:
        micro-batch i adds (n_i / N) * its own mean's gradient. An on-policy
        micro-batch's loss is the divergence alone (GKD)."""
        distill = self.config.distill
        kd_only = dataclasses.replace(distill, kd_ratio=1.0) if distill is not None else None
        model, total = self.model, sum(counts)
        model.zero_grad()
        loss = 0.0
        # the distillation loss's two terms, weighted as the loss is (logged as "ce" and "kd")
        self._step_terms = {"ce": 0.0, "kd": 0.0} if self.teacher is not None else None
        for i, (batch, n) in enumerate(zip(micro, counts)):
            if n == 0:  # loss() refuses a batch with no label, and it would add nothing
                continue
            teacher, topk = self.teacher, None
            if isinstance(teacher, TeacherCache):
                teacher, topk = None, (*teacher.topk(batch["row_ids"], batch["labels"], distill.top_k),
                                        teacher.temperature)
            value = model.loss(batch["input_ids"], batch["labels"], batch.get("attention_mask"),
                               batch.get("position_ids"), teacher=teacher, teacher_topk=topk,
                               distill=kd_only if on_policy[i] else distill)
            if not math.isfinite(value):
                raise self._numeric_stop(step, f"the training loss is {value} (micro-batch {i + 1} of {len(micro)})")
            model.backward(n / total)
            loss += value * n / total
            if self._step_terms is not None:
                for key in self._step_terms:
                    self._step_terms[key] += model.last_loss_terms[key] * n / total
        return loss

    def _numeric_stop(self, step: int, what: str) -> NumericError:
        found = ckpt.checkpoints(self.config.output_dir)
        last = f"the last checkpoint, {found[-1][1]}, is intact" if found else "no checkpoint had been written"
        return NumericError(f"step {step}: {what}; training stopped before updating the weights and {last}. "
                            f"A lower learning_rate or max_grad_norm may help.")

    def _total_steps(self, stream: BatchStream) -> int:
        cfg = self.config
        if cfg.max_steps > 0:
            return cfg.max_steps
        if stream.per_epoch is None:
            raise ValueError("train_data has no len(), so num_train_epochs cannot be turned into steps: set max_steps")
        if stream.per_epoch == 0:
            raise ValueError("train_data is empty")
        return math.ceil(cfg.num_train_epochs * -(-stream.per_epoch // cfg.gradient_accumulation_steps))

    # ----------------------------------------------------------- evaluation
    def evaluate(self) -> dict:
        """{"eval_loss", "eval_ppl", "eval_tokens"} on eval_data (no dropout)."""
        if self.eval_data is None:
            raise ValueError("no eval_data was given to the Trainer")
        return evaluate(self.model, self.eval_data, self.config.eval_batch_size or self.config.batch_size)

    def _evaluate_and_keep_best(self) -> dict:
        result = self.evaluate()
        best = self.state.best_metric
        if best is None or result["eval_loss"] < best:
            ckpt.check_finite(self.model, self.state.global_step)
            write_folder(os.path.join(self.config.output_dir, BEST_NAME),
                              lambda folder: ckpt.save_weights(self.model, folder))
            self.state.best_metric, self.state.best_global_step = result["eval_loss"], self.state.global_step
        return {"eval_loss": result["eval_loss"], "eval_ppl": result["eval_ppl"]}

    # ---------------------------------------------------------- checkpoints
    def _save_checkpoint(self) -> str:
        step = self.state.global_step
        folder = os.path.join(self.config.output_dir, f"checkpoint-{step}")
        ckpt.check_finite(self.model, self.state.global_step)
        write_folder(folder, self._fill_checkpoint)
        self._last_saved = step
        ckpt.prune(self.config.output_dir, self.config.save_total_limit)
        return folder

    def _fill_checkpoint(self, folder: str) -> None:
        ckpt.save_weights(self.model, folder)
        ckpt.save_optimizer(self.optimizer, folder)
        scheduler = {"lr_scheduler_type": self.config.lr_scheduler_type, "warmup_steps": self._warmup,
                     "total_steps": self._total, "last_lr": self._lr}
        weights = "adapter" if self.model.active_adapter is not None else "full"
        atomic_write_text(os.path.join(folder, STATE_NAME),
                          state_json(self.state, weights=weights, scheduler=scheduler,
                                     train_config=self.config.to_dict()))
        atomic_write_text(os.path.join(folder, RNG_NAME), json.dumps(self._rng) + "\n")

    def _save_on_interrupt(self) -> None:
        step = self.state.global_step
        if self._updating:
            print(f"\ntinylm: interrupted during the optimizer update of step {step + 1}: its state is not "
                  f"consistent, so no checkpoint was written", file=sys.stderr)
        elif step > 0 and self._last_saved != step:
            print(f"\ntinylm: interrupted; saved {self._save_checkpoint()}", file=sys.stderr)

    def _resume_folder(self) -> str | None:
        target = self.config.resume_from_checkpoint
        if target is None or target is False:
            return None
        if target is True:
            found = ckpt.checkpoints(self.config.output_dir)
            if not found:
                raise FileNotFoundError(f"resume_from_checkpoint=True, but {self.config.output_dir} has no "
                                        f"checkpoint-<step> folder")
            return found[-1][1]
        if not os.path.isfile(os.path.join(target, STATE_NAME)):
            raise FileNotFoundError(f"{target}: not a checkpoint folder (no {STATE_NAME})")
        return target

    def _load(self, folder: str) -> None:
        record = ckpt.read_json(folder, STATE_NAME)
        saved = record["train_config"]
        if saved["batch_size"] != self.config.batch_size:
            raise ValueError(f"{folder}: the checkpoint was trained with batch_size={saved['batch_size']}, and its "
                             f"data position counts batches of that size; resume with the same batch_size")
        adapter = self.model.active_adapter
        if record["weights"] == "adapter" and adapter is None:
            raise ValueError(f"{folder}: the checkpoint holds a LoRA adapter; add the same adapter to the model "
                             f"(model.add_lora with the same arguments and seed) before resuming")
        if record["weights"] == "full" and adapter is not None:
            raise ValueError(f"{folder}: the checkpoint holds a fully fine-tuned model, but this model trains "
                             f"adapter {adapter!r}; resume it on the model without adapters")
        changed = [f"{k}: {saved.get(k)!r} -> {v!r}" for k, v in self.config.to_dict().items()
                   if k not in _BOOKKEEPING and saved.get(k) != v]
        if changed:
            warnings.warn(f"resuming {folder} with changed settings ({'; '.join(changed)}): the run will differ "
                          f"from an uninterrupted one", UserWarning, stacklevel=3)
        ckpt.load_weights(self.model, folder)
        ckpt.load_optimizer(self.optimizer, folder)
        self.state = state_from(record)
        self._rng = ckpt.read_json(folder, RNG_NAME)
        restore_rng(self.model, self._rng)
        self._last_saved = self.state.global_step
        self.metrics.truncate_after(self.state.global_step)

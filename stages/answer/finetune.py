"""LoRA fine-tuning of the answer model, with or without speaker attention alignment (the paper's
training: every model in its main table is LoRA-tuned per dataset, the aligned ones with the
alignment active during training too).

Each question is encoded exactly as answering encodes it (:meth:`AnswerStage.encode`: same frames,
prompt, boxes and plan), and the loss is minus the mean log-probability of the gold option's tokens
after the prompt: the quantity ``eval`` compares across options. Questions go through the model one
at a time and their gradients are accumulated to ``batch_size`` per optimiser step (the same
gradient as a padded batch, without padding the alignment plans). With ``align`` the forward and the
backward pass both run inside the alignment block, so recomputed (checkpointed) layers are aligned
again the same way.

The output folder holds:
- ``adapter/``: the trained LoRA adapter (peft, safetensors), for ``--adapter`` at run or eval time;
- ``checkpoint/``: the adapter, optimiser, schedule and random state after the last checkpointed
  step; a run started again on the folder resumes there with the same data order;
- ``train_log.jsonl``: one line per step (loss, learning rate, gradient norm, seconds), and the same
  in ``tensorboard/`` when TensorBoard is installed.
"""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from socialpipe.pipeline.contracts.config import AnswerConfig, FinetuneConfig
from socialpipe.pipeline.contracts.errors import SocialpipeError, first_line
from socialpipe.pipeline.contracts.io import write_text_atomic
from socialpipe.pipeline.contracts.progress import ProgressEvent, ProgressHook, quiet, stopwatch
from socialpipe.stages.answer.lora import ADAPTER_WEIGHTS, add_lora
from socialpipe.stages.answer.stage import AnswerStage, Scene, load_model, option_log_probs, option_tokens

CHECKPOINT = "checkpoint"
ADAPTER = "adapter"
LOG = "train_log.jsonl"
TRAINER_STATE = "trainer_state.pt"


@dataclass(frozen=True)
class Example:
    """One training question: what the model is shown, the options and the gold one."""

    scene: Scene
    question: str
    options: tuple[str, ...]
    answer_index: int


def data_order(count: int, seed: int, epoch: int) -> np.ndarray:
    """The questions' order in one epoch: a permutation fixed by (seed, epoch), so a resumed run
    sees the same order as an uninterrupted one."""
    return np.random.default_rng([seed, epoch]).permutation(count)


def total_steps(count: int, settings: FinetuneConfig) -> int:
    return settings.max_steps or settings.epochs * math.ceil(count / settings.batch_size)


def step_questions(step: int, count: int, seed: int, batch_size: int) -> tuple[int, list[int]]:
    """(epoch, question indices) of optimiser step ``step``; an epoch's last step may take fewer."""
    per_epoch = math.ceil(count / batch_size)
    epoch, within = divmod(step, per_epoch)
    order = data_order(count, seed, epoch)
    return epoch, [int(i) for i in order[within * batch_size:(within + 1) * batch_size]]


def encode_example(stage: AnswerStage, example: Example):
    """(the question encoded as answering encodes it, the gold option's tokens)."""
    encoded = stage.encode(example.scene, example.question, example.options)
    gold = option_tokens(stage.loaded.processor.tokenizer, example.options[example.answer_index])
    if not gold:
        raise SocialpipeError(f"the gold option {example.options[example.answer_index]!r} has no tokens")
    return encoded, gold


class Finetuner:
    """Trains one LoRA adapter (one seed) on a question set, resumably."""

    def __init__(self, settings: AnswerConfig, train: FinetuneConfig, seed: int = 0, progress: ProgressHook = quiet):
        if settings.adapter is not None:
            raise SocialpipeError(f"answer.adapter is {settings.adapter!r}; finetune trains a new adapter on the base "
                                  "model, expected answer.adapter unset")
        self.settings, self.train, self.seed, self.progress = settings, train, seed, progress

    def run(self, examples: Callable[[int], Example | None], count: int, out: Path) -> dict:
        """Train on questions ``examples(0..count-1)``; write the adapter, checkpoints and log under ``out``.
        A question that ``examples`` gives as None (its frames could not be read) is left out of its step."""
        if count < 1:
            raise SocialpipeError("no questions to train on; expected at least one readable question")
        train, seed = self.train, self.seed
        torch.manual_seed(seed)
        loaded = load_model(self.settings)
        model = add_lora(loaded.model, train)
        loaded.model = model.get_base_model()  # the alignment and encoding address the wrapped model itself
        if train.gradient_checkpointing:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.train()
        stage = AnswerStage(self.settings, loaded=loaded)
        parameters = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(parameters, lr=train.learning_rate, weight_decay=train.weight_decay)
        steps = total_steps(count, train)
        scheduler = _schedule(optimizer, steps, train.warmup_ratio)
        first_step = _resume(out, model, optimizer, scheduler)
        log = _Log(out, first_step)  # makes the folder
        last_loss = None
        try:
            for step in range(first_step, steps):
                elapsed = stopwatch()
                epoch, picks = step_questions(step, count, seed, train.batch_size)
                loss_sum, batch = 0.0, [example for example in map(examples, picks) if example is not None]
                for example in batch:
                    encoded, gold = encode_example(stage, example)
                    with stage.aligned(encoded.plan):
                        loss = -option_log_probs(model, encoded.inputs, gold).mean()
                        (loss / len(batch)).backward()
                    loss_sum += float(loss.detach())
                grad_norm = torch.nn.utils.clip_grad_norm_(parameters, train.max_grad_norm or float("inf"))
                rate = scheduler.get_last_lr()[0]
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                record = {"step": step + 1, "epoch": epoch, "loss": loss_sum / max(len(batch), 1),
                          "learning_rate": rate, "grad_norm": float(grad_norm), "questions": picks,
                          "left_out": len(picks) - len(batch),
                          "seconds": elapsed()}
                last_loss = record["loss"]
                log.write(record)
                if (step + 1) % train.checkpoint_every == 0 or step + 1 == steps:
                    _save_checkpoint(out, model, optimizer, scheduler, step + 1)
                self.progress(ProgressEvent("finetune", step + 1, steps, "step",
                                            f"seed {seed} step {step + 1}/{steps} loss {record['loss']:.4f}"))
        finally:
            log.close()
        final = out / ADAPTER
        if final.exists():
            shutil.rmtree(final)
        model.save_pretrained(str(final), safe_serialization=True)
        return {"seed": seed, "steps": steps, "resumed_at_step": first_step, "questions": count,
                "trainable_parameters": sum(p.numel() for p in parameters),
                "final_loss": last_loss, "adapter": str(final)}


def _schedule(optimizer, steps: int, warmup_ratio: float):
    """Linear warm-up over ``warmup_ratio`` of the steps, then cosine decay to zero."""
    from transformers import get_cosine_schedule_with_warmup

    return get_cosine_schedule_with_warmup(optimizer, int(round(warmup_ratio * steps)), steps)


def _save_checkpoint(out: Path, model, optimizer, scheduler, step: int) -> None:
    """Adapter + trainer state written beside the old checkpoint, then swapped in: a kill at any moment
    leaves one whole checkpoint."""
    fresh, old = out / f"{CHECKPOINT}.new", out / f"{CHECKPOINT}.old"
    for stale in (fresh, old):
        if stale.exists():
            shutil.rmtree(stale)
    model.save_pretrained(str(fresh), safe_serialization=True)
    torch.save({"step": step, "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                "torch_rng": torch.get_rng_state()}, fresh / TRAINER_STATE)
    current = out / CHECKPOINT
    if current.exists():
        current.rename(old)
    fresh.rename(current)
    if old.exists():
        shutil.rmtree(old)


def _resume(out: Path, model, optimizer, scheduler) -> int:
    """The step to start from: 0, or the last checkpoint's step with its adapter, optimiser, schedule and
    random state restored (read with ``weights_only=True``: nothing in it is executed)."""
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    folder = out / CHECKPOINT
    if not folder.is_dir() and (out / f"{CHECKPOINT}.old").is_dir():
        folder = out / f"{CHECKPOINT}.old"  # killed between the two renames
    if not (folder / TRAINER_STATE).is_file():
        return 0
    try:
        state = torch.load(folder / TRAINER_STATE, weights_only=True)
        set_peft_model_state_dict(model, load_file(folder / ADAPTER_WEIGHTS))
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
    except (RuntimeError, KeyError, ValueError, OSError) as exc:
        raise SocialpipeError(f"{folder}: cannot resume from this checkpoint ({type(exc).__name__}: "
                              f"{first_line(exc)}); expected one written by socialpipe finetune with "
                              "the same settings (delete the folder to start again)") from None
    torch.set_rng_state(state["torch_rng"])
    return int(state["step"])


class _Log:
    """``train_log.jsonl`` (lines past the resumed step dropped, as they are done again) and TensorBoard
    when it is installed."""

    def __init__(self, out: Path, first_step: int):
        path = out / LOG
        kept = []
        if path.is_file():
            for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if isinstance(record, dict) and isinstance(record.get("step"), int) and record["step"] <= first_step:
                    kept.append(line + "\n")
        out.mkdir(parents=True, exist_ok=True)
        write_text_atomic(path, "".join(kept))
        self.sink = open(path, "a", encoding="utf-8")
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.board = SummaryWriter(str(out / "tensorboard"), purge_step=first_step + 1)
        except ImportError:  # tensorboard is optional
            self.board = None

    def write(self, record: dict) -> None:
        self.sink.write(json.dumps(record) + "\n")
        self.sink.flush()
        if self.board is not None:
            self.board.add_scalar("train/loss", record["loss"], record["step"])
            self.board.add_scalar("train/learning_rate", record["learning_rate"], record["step"])
            self.board.add_scalar("train/grad_norm", record["grad_norm"], record["step"])

    def close(self) -> None:
        self.sink.close()
        if self.board is not None:
            self.board.close()


"""LoRA adapters through ``peft``: where they go (the language model's linear layers, never the vision
tower), how a trained adapter is added to a model for answering, and how one is saved and read back
(safetensors only: nothing is unpickled)."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from socialpipe.pipeline.contracts.config import FinetuneConfig
from socialpipe.pipeline.contracts.errors import InputError, SocialpipeError, first_line
from socialpipe.stages.answer.attention import decoder_layers
from socialpipe.stages.answer.families import ATTENTION_PROJECTIONS, FAMILIES, supported

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"


def decoder_layers_path(model) -> tuple[str, torch.nn.ModuleList]:
    """The dotted name of the language model's decoder layers in ``model`` and the layers themselves."""
    try:
        return decoder_layers(model)
    except ValueError:
        raise SocialpipeError(f"{type(model).__name__}: LoRA fine-tuning and the alignment support the {supported()} "
                              "families (transformers' own classes); this model has no language decoder layers "
                              "they recognise") from None


def lora_targets(model, target: str = "all") -> list[str]:
    """Full names of the linear layers that get an adapter: every ``nn.Linear`` inside the language model's
    decoder layers (``all``) or the attention projections only (``attention``). The vision tower, the
    projector and the output head stay frozen and adapter-free."""
    prefix, layers = decoder_layers_path(model)
    family = FAMILIES.get(getattr(getattr(model, "config", None), "model_type", None))
    names = [f"{prefix}.{name}" for name, module in layers.named_modules() if isinstance(module, torch.nn.Linear)]
    if target == "attention":
        projections = ATTENTION_PROJECTIONS if family is None else family.attention_projections
        names = [name for name in names if name.rsplit(".", 1)[-1] in projections]
    if not names:
        raise SocialpipeError(f"{type(model).__name__}: no linear layers to adapt in {prefix} ({target})")
    return names


def add_lora(model, settings: FinetuneConfig):
    """``model`` wrapped by peft with fresh, trainable LoRA adapters (everything else frozen)."""
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(r=settings.rank, lora_alpha=settings.lora_alpha, lora_dropout=settings.lora_dropout,
                        target_modules=lora_targets(model, settings.target), bias="none")
    return get_peft_model(model, config)


def check_adapter(folder: str | Path) -> Path:
    """The adapter folder, after checking it holds an adapter config and safetensors weights."""
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise InputError(f"answer.adapter {str(folder)!r}: no such folder; expected the adapter folder that "
                         "socialpipe finetune wrote (OUT/adapter)")
    missing = [name for name in (ADAPTER_CONFIG, ADAPTER_WEIGHTS) if not (folder / name).is_file()]
    if missing:
        pickled = " (pickled .bin adapters are never loaded: save it again with safe_serialization=True)" \
            if (folder / "adapter_model.bin").is_file() else ""
        raise InputError(f"answer.adapter {str(folder)!r}: has no {missing[0]}{pickled}; expected a peft LoRA "
                         f"adapter folder with {ADAPTER_CONFIG} and {ADAPTER_WEIGHTS}")
    try:
        config = json.loads((folder / ADAPTER_CONFIG).read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
        raise InputError(f"{folder / ADAPTER_CONFIG}: not readable JSON; expected a peft adapter config") from None
    if not isinstance(config, dict) or config.get("peft_type") != "LORA":
        raise InputError(f"{folder / ADAPTER_CONFIG}: not a LoRA adapter (peft_type "
                         f"{config.get('peft_type') if isinstance(config, dict) else None!r}); expected LORA")
    return folder


def apply_adapter(model, folder: str | Path):
    """``model`` with the LoRA adapter in ``folder`` merged into its weights (answering costs nothing extra)."""
    from peft import PeftModel

    folder = check_adapter(folder)
    try:
        wrapped = PeftModel.from_pretrained(model, str(folder), is_trainable=False)
    except (RuntimeError, ValueError, KeyError) as exc:  # shape or module-name mismatch: another base model
        raise InputError(f"answer.adapter {str(folder)!r} does not fit this model ({type(exc).__name__}: "
                         f"{first_line(exc, 160)}); expected an adapter trained on "
                         f"{type(model).__name__} of the same size") from None
    return wrapped.merge_and_unload()

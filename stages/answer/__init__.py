"""Stage 4, answer: a multimodal LLM with speaker attention alignment.

- ``stage``: frames, prompt, variants and option scoring (:class:`AnswerStage`);
- ``families``: what differs between the model families (Qwen2.5-VL, LLaVA-NeXT-Video, InternVL3):
  the visual token, the frame grids, where the decoder layers are, one adapter module each;
- ``plan``: a sequence's (speaker, frame) groups of transcript rows and box columns;
- ``layout``: where each frame's speaker box and each transcript line sit among the tokens;
- ``attention``: the intervention itself (head selection + adaptive bias) as a transformers
  attention function, model-agnostic;
- ``lora`` and ``finetune``: LoRA adapters and training;
- ``diagnostics``: AttnMax / AttnMean, active heads, and heatmap pictures.

The names below load their modules (and torch) on first use, so that reading the stage table does not.
"""

from __future__ import annotations

import importlib
from typing import Any

HEATMAP_FILE = "attention.png"  # a speaker's attention, without and with the bias, beside answer.json

_EXPORTS = {"AnswerStage": "stage", "Scene": "stage", "load_model": "stage", "prompt_line": "stage",
            "transcript_lines": "stage", "Example": "finetune", "Finetuner": "finetune",
            "frames_covered": "layout", "FAMILIES": "families", "ModelFamily": "families"}

__all__ = ["HEATMAP_FILE", *_EXPORTS]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)

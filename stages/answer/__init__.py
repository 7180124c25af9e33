"""Stage 4, answer: a multimodal LLM with speaker attention alignment.

- ``stage``: frames, prompt, variants and option scoring (:class:`AnswerStage`);
- ``plan``: a sequence's (speaker, frame) groups of transcript rows and box columns;
- ``layout``: where each frame's speaker box and each transcript line sit among the tokens the
  processor produced, per model family;
- ``attention``: the intervention itself (head selection + adaptive bias) as a transformers
  attention function, model-agnostic;
- ``diagnostics``: AttnMax / AttnMean, active heads, and heatmap pictures.
"""

from socialpipe.stages.answer.stage import AnswerStage, load_model

__all__ = ["AnswerStage", "load_model"]

"""Stage 4, answer: a multimodal LLM with speaker attention alignment.

- ``alignment``: the intervention itself (head selection + adaptive bias), model-agnostic;
- ``layout``: where each frame's speaker box and each transcript line sit among the tokens the
  processor produced, per model family.
"""

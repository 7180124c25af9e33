"""Model families: what the answer stage knows about each kind of multimodal LLM, one module each.

A :class:`ModelFamily` says which token stands for a frame's visual features, where each frame's grid
of visual tokens sits in a processed sequence (and how it maps to the original frame's pixels), where
the language model's decoder layers are, and which of their linear layers LoRA adapts. The families
are registered by their transformers ``model_type``; a new family is one module that calls
:func:`register`. Every message that names the supported families reads them from here.
"""

from socialpipe.stages.answer.families.base import (ATTENTION_PROJECTIONS, FAMILIES, ModelFamily, decoder_layer_paths,
                                                    family_of, frame_grids, register, supported, visual_token_id)

# the built-in families, registered in this order (messages list them so)
from socialpipe.stages.answer.families import qwen2_5_vl  # noqa: E402,F401
from socialpipe.stages.answer.families import llava_next_video  # noqa: E402,F401
from socialpipe.stages.answer.families import internvl  # noqa: E402,F401

__all__ = ["ATTENTION_PROJECTIONS", "FAMILIES", "ModelFamily", "decoder_layer_paths", "family_of", "frame_grids",
           "register", "supported", "visual_token_id"]

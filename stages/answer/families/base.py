"""The model-family record and the registry the family modules add themselves to."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from socialpipe.stages.answer.layout import FrameGrid, LayoutError

ATTENTION_PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj")
GridBuilder = Callable[..., list[list[FrameGrid]]]  # (processor, inputs, frame_size, num_frames, token_id, config)


@dataclass(frozen=True)
class ModelFamily:
    model_type: str  # transformers' config.model_type
    name: str  # as people call it
    visual_token_id: Callable[[object], int]  # config -> the token id standing for a frame's features
    grids: GridBuilder  # the visual token grids of each sequence in a processed batch
    decoder_layers: tuple[str, ...] = ("model.language_model.layers", "language_model.model.layers")
    attention_projections: tuple[str, ...] = ATTENTION_PROJECTIONS  # LoRA's ``attention`` target


FAMILIES: dict[str, ModelFamily] = {}


def register(family: ModelFamily) -> ModelFamily:
    FAMILIES[family.model_type] = family
    return family


def supported() -> str:
    """The registered families' names, for messages: "A, B and C"."""
    names = [family.name for family in FAMILIES.values()]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def family_of(model_or_config) -> ModelFamily:
    config = getattr(model_or_config, "config", model_or_config)
    family = FAMILIES.get(getattr(config, "model_type", None))
    if family is None:
        raise LayoutError(f"model family {getattr(config, 'model_type', None)!r} is not supported by the alignment yet; "
                          f"supported: {list(FAMILIES)} ({supported()})")
    return family


def visual_token_id(config) -> int:
    """The token id that stands for a video frame's visual features in this model's family."""
    return family_of(config).visual_token_id(config)


def frame_grids(processor, inputs: Mapping, frame_size: tuple[int, int], num_frames: int,
                config) -> list[list[FrameGrid]]:
    """Per sequence of the batch, its visual token grids (one video per sequence); ``frame_size`` is
    the original (width, height)."""
    family = family_of(config)
    return family.grids(processor, inputs, frame_size, num_frames, family.visual_token_id(config), config)


def decoder_layer_paths() -> tuple[str, ...]:
    """Where the registered families keep their language model's decoder layers, then the plain places."""
    paths = [path for family in FAMILIES.values() for path in family.decoder_layers]
    return tuple(dict.fromkeys([*paths, "model.layers", "language_model.layers"]))

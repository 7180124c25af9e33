"""Stage 3, link: which on-screen person owns each voice (LR-ASD active-speaker scores, mouth activity as fallback)."""

from socialpipe.stages.link.stage import LinkStage, mouth_box

__all__ = ["LinkStage", "mouth_box"]

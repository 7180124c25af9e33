"""What the alignment needs to know of one input sequence: its (speaker, frame) groups of transcript
token rows ``U_{s,t}`` and box token columns ``V_{s,t}`` (see docs/method.md)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np


@dataclass(frozen=True)
class SpeakerGroup:
    """One (speaker, frame) pair: its transcript token rows and the visual token columns of its box."""

    speaker: str
    frame: int
    rows: np.ndarray  # (r,) token indices in U_{s,t}
    cols: np.ndarray  # (c,) token indices in V_{s,t}


@dataclass(frozen=True)
class SequencePlan:
    """The groups of one sequence of the batch (indices into that row of ``input_ids``)."""

    groups: tuple[SpeakerGroup, ...] = ()
    visual: np.ndarray | None = None  # every visual token of the sequence, for attention heatmaps

    @cached_property
    def usable_groups(self) -> tuple[SpeakerGroup, ...]:
        """The groups with both transcript rows and box columns (the others cannot be biased)."""
        return tuple(g for g in self.groups if len(g.rows) and len(g.cols))

    @cached_property
    def rows(self) -> np.ndarray:
        """U, sorted."""
        usable = [g.rows for g in self.usable_groups]
        return np.unique(np.concatenate(usable)) if usable else np.zeros(0, np.int64)

    @cached_property
    def cols(self) -> np.ndarray:
        """V_all, sorted."""
        usable = [g.cols for g in self.usable_groups]
        return np.unique(np.concatenate(usable)) if usable else np.zeros(0, np.int64)

    @property
    def empty(self) -> bool:
        return len(self.rows) == 0 or len(self.cols) == 0

"""The one protocol every stage follows, and the bundle of inputs it is given.

A stage is built from its settings section; ``check(inputs)`` fails at once, before a run writes
anything, on what would make it fail later (no audio, a device the machine lacks, weights that
cannot be read); ``run(inputs, progress)`` makes the stage's artifact. The orchestrator calls only
these two, through the stage table (:mod:`socialpipe.pipeline.run.stage_table`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from socialpipe.pipeline.contracts.artifacts import SpeakerLinks, Tracks, Transcript, VideoInfo
from socialpipe.pipeline.contracts.errors import InputError
from socialpipe.pipeline.contracts.progress import ProgressHook


@dataclass(frozen=True)
class StageInputs:
    """What a stage runs on: the video, the artifacts of the steps before it, and the run's question."""

    video: VideoInfo
    tracks: Tracks | None = None
    transcript: Transcript | None = None
    links: SpeakerLinks | None = None
    question: str | None = None
    options: tuple[str, ...] = ()
    folder: Path | None = None  # the run folder, for a stage's pictures beside its artifact
    unlisted_off_screen: bool = False  # given links: voices they do not name are off screen

    def need(self, name: str) -> Any:
        """The input ``name``, which the stage cannot run without."""
        value = getattr(self, name)
        if value is None:
            raise InputError(f"this stage needs the {name} of an earlier stage, and the run has none")
        return value


class Stage(Protocol):
    def check(self, inputs: StageInputs) -> None:
        """Raise a one-line SocialpipeError now for what would make ``run`` fail later."""

    def run(self, inputs: StageInputs, progress: ProgressHook) -> Any:
        """The stage's artifact."""

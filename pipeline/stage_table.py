"""The one table of the pipeline's steps: name, artifact type, file, exports, settings section and
ground-truth option. The orchestrator, the run folder, the report and the CLI all read it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from socialpipe.pipeline.artifacts import Answer, SpeakerLinks, Tracks, Transcript, VideoInfo
from socialpipe.pipeline.formats import write_mot, write_rttm, write_vtt


@dataclass(frozen=True)
class Export:
    """A file written beside a stage's JSON, in a format other tools read."""

    file: str
    write: Callable[[object, Path, VideoInfo], object]  # (artifact, path, video)


@dataclass(frozen=True)
class StageSpec:
    name: str
    artifact: type
    file: str  # the canonical JSON in the run folder
    exports: tuple[Export, ...] = ()
    reads: tuple[str, ...] = ()  # the steps whose artifacts this stage takes as input
    config_section: str | None = None  # the Config section holding the stage's settings
    ground_truth_option: str | None = None  # the run option that gives this artifact instead of running it
    extra_files: tuple[str, ...] = ()  # other files the stage writes (pictures)

    @property
    def files(self) -> list[str]:
        """Every file of the stage in the run folder."""
        return [self.file, *(export.file for export in self.exports), *self.extra_files]


def _write_asd(links, path: Path, video: VideoInfo):
    """The speaking scores in AVA-ActiveSpeaker's csv (boxes from the run's people.json beside it)."""
    from socialpipe.pipeline.artifacts import load_json
    from socialpipe.pipeline.scoring import write_ava_csv

    return write_ava_csv(links, load_json(Tracks, path.parent / "people.json"), path, Path(video.path).stem,
                         video.width, video.height)


HEATMAP_FILE = "attention.png"  # the answer stage's picture of a speaker's attention, without and with the bias
VIDEO = StageSpec("video", VideoInfo, "video.json")
STAGE_TABLE: tuple[StageSpec, ...] = (
    StageSpec("people", Tracks, "people.json",
              (Export("people.mot.csv", lambda tracks, path, video: write_mot(tracks, path)),),
              ("video",), "people", "tracks"),
    StageSpec("speech", Transcript, "speech.json",
              (Export("speech.rttm", lambda transcript, path, video: write_rttm(transcript, path,
                                                                                uri=Path(video.path).stem)),
               Export("speech.vtt", lambda transcript, path, video: write_vtt(transcript, path))),
              ("video",), "speech", "transcript"),
    StageSpec("link", SpeakerLinks, "links.json", (Export("asd.csv", _write_asd),), ("people", "speech"), "link",
              "links"),
    StageSpec("answer", Answer, "answer.json", (), ("people", "speech", "link"), "answer", None, (HEATMAP_FILE,)),
)
STAGE_NAMES: tuple[str, ...] = tuple(spec.name for spec in STAGE_TABLE)
_BY_NAME = {spec.name: spec for spec in (VIDEO, *STAGE_TABLE)}


def downstream_of(name: str) -> list[StageSpec]:
    """The stages that read ``name``'s artifact, directly or through others, in pipeline order."""
    affected = {name}
    found = []
    for spec in STAGE_TABLE:
        if affected & set(spec.reads):
            affected.add(spec.name)
            found.append(spec)
    return [spec for spec in found if spec.name != name]


def spec_of(name: str) -> StageSpec:
    """The table row of a step (``video`` or a stage name)."""
    return _BY_NAME[name]

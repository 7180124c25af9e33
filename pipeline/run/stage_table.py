"""The one table of the pipeline's steps. Each row says everything the rest of the program needs to know
about a stage: its artifact type and files, the steps it reads, its settings section, how to build it,
and how ground truth given in its place is read and checked. The orchestrator, the run folder, the
report and the CLI all read it, and none of them names a stage."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from socialpipe.pipeline.contracts.artifacts import Answer, SpeakerLinks, Tracks, Transcript, VideoInfo, load_json
from socialpipe.pipeline.contracts.config import Config
from socialpipe.pipeline.contracts.formats import (load_links, load_tracks, load_transcript, write_annotation_rttm,
                                                   write_ava_csv, write_mot, write_rttm, write_vtt)
from socialpipe.pipeline.contracts.stage import Stage, StageInputs
from socialpipe.stages.answer import HEATMAP_FILE


NAMES_FILE = "names.json"  # the names given in a run (socialpipe.pipeline.contracts.artifacts.Names)


@dataclass(frozen=True)
class Export:
    """A file written beside a stage's JSON, in a format other tools read."""

    file: str
    write: Callable[[Any, Path, VideoInfo], object]  # (artifact, path, video)


@dataclass(frozen=True)
class StageSpec:
    name: str
    artifact: type
    file: str  # the canonical JSON in the run folder
    exports: tuple[Export, ...] = ()
    reads: tuple[str, ...] = ()  # the steps whose artifacts this stage takes as input
    config_section: str | None = None  # the Config section holding the stage's settings
    result: str | None = None  # the field of StageInputs (and RunResult) that holds the artifact
    build: Callable[[Config], Stage] | None = None  # the stage, from the run's settings
    describe: Callable[[Config], str] = lambda config: ""  # where the artifact comes from, in words
    ground_truth_option: str | None = None  # the run option that gives this artifact instead of running it
    load_given: Callable[[Path, StageInputs], Any] | None = None  # read that file (errors name it)
    validate: Callable[[Any, StageInputs], None] | None = None  # check it against the video and earlier artifacts
    given_flags: tuple[str, ...] = ()  # run options that change how the ground truth is read (recorded with it)
    request_inputs: tuple[str, ...] = ()  # run options the stage reads (part of its key)
    requires: str | None = None  # a run option without which the run stops before this stage
    extra_files: tuple[str, ...] = ()  # other files the stage writes (pictures)
    named: bool = False  # the run's names (names.json, run --name / --gallery) apply to this artifact

    @property
    def files(self) -> list[str]:
        """Every file of the stage in the run folder."""
        return [self.file, *(export.file for export in self.exports), *self.extra_files]


def _write_asd(links: SpeakerLinks, path: Path, video: VideoInfo):
    """The speaking scores in AVA-ActiveSpeaker's csv (boxes from the run's people.json beside it)."""
    return write_ava_csv(links, load_json(Tracks, path.parent / "people.json"), path, Path(video.path).stem,
                         video.width, video.height)


def _write_who_spoke_when(links: SpeakerLinks, path: Path, video: VideoInfo):
    """Who spoke when by person (the audio-visual diarization) as RTTM, from the run's speech.json beside it."""
    transcript = load_json(Transcript, path.parent / "speech.json")
    return write_annotation_rttm(links.who_spoke_when(transcript, uri=Path(video.path).stem), path)


def _write_final_transcript(links: SpeakerLinks, path: Path, video: VideoInfo):
    """The transcript by person (``SpeakerLinks.labelled``) as WebVTT, from the run's speech.json beside it."""
    return write_vtt(links.labelled(load_json(Transcript, path.parent / "speech.json")), path)


def _people(config: Config) -> Stage:
    from socialpipe.stages.people import PeopleStage

    return PeopleStage(config.people)


def _speech(config: Config) -> Stage:
    from socialpipe.stages.speech import SpeechStage

    return SpeechStage(config.speech)


def _link(config: Config) -> Stage:
    from socialpipe.stages.link import LinkStage

    return LinkStage(config.link)


def _answer(config: Config) -> Stage:
    from socialpipe.stages.answer import AnswerStage

    return AnswerStage(config.answer)


def _given_links(path: Path, inputs: StageInputs) -> SpeakerLinks:
    links = load_links(path)
    return links.with_unlisted_off_screen(inputs.need("transcript")) if inputs.unlisted_off_screen else links


VIDEO = StageSpec("video", VideoInfo, "video.json")
STAGE_TABLE: tuple[StageSpec, ...] = (
    StageSpec("people", Tracks, "people.json",
              (Export("people.mot.csv", lambda tracks, path, video: write_mot(tracks, path)),),
              ("video",), "people", "tracks", _people,
              lambda config: f"people stage ({config.people.detector}, {config.people.tracker})",
              "tracks", lambda path, inputs: load_tracks(path, inputs.video.fps),
              lambda tracks, inputs: tracks.validate_against(inputs.video)),
    StageSpec("speech", Transcript, "speech.json",
              (Export("speech.rttm", lambda transcript, path, video: write_rttm(transcript, path,
                                                                                uri=Path(video.path).stem)),
               Export("speech.vtt", lambda transcript, path, video: write_vtt(transcript, path))),
              ("video",), "speech", "transcript", _speech,
              lambda config: f"speech stage ({config.speech.asr_model}, {config.speech.diarizer} diarization)",
              "transcript", lambda path, inputs: load_transcript(path),
              lambda transcript, inputs: transcript.validate_against(inputs.video)),
    StageSpec("link", SpeakerLinks, "links.json", (Export("asd.csv", _write_asd),
                                                   Export("who_spoke_when.rttm", _write_who_spoke_when),
                                                   Export("transcript.vtt", _write_final_transcript)),
              ("people", "speech"), "link",
              "links", _link, lambda config: f"link stage ({config.link.asd_model} active speaker x speech activity)",
              "links", _given_links,
              lambda links, inputs: links.validate_against(inputs.need("tracks"), inputs.need("transcript")),
              given_flags=("unlisted_off_screen",), extra_files=(NAMES_FILE,), named=True),
    StageSpec("answer", Answer, "answer.json", (), ("people", "speech", "link"), "answer", "answer", _answer,
              lambda config: f"answer stage ({config.answer.model}, {config.answer.variant})",
              request_inputs=("question", "options", "naming"), requires="question", extra_files=(HEATMAP_FILE,)),
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

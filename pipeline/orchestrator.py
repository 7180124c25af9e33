"""The run, as numbered steps: video -> people -> speech -> link -> answer.

Each step writes its artifact atomically into the run folder, is skipped when an
up-to-date artifact exists (same inputs and settings), and reports through one
progress hook. Ground truth given for a step replaces that step; its file is
validated against the video (and the earlier artifacts) first.

Stages that this version does not implement say so and name the ground-truth
option that can stand in for them; nothing fakes their output.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from pipeline.artifacts import Answer, SpeakerLinks, Tracks, Transcript, VideoInfo, load_json
from pipeline.config import Config
from pipeline.errors import InputError, NoAudioError
from pipeline.formats import load_links, load_tracks, load_transcript, write_mot, write_rttm, write_vtt
from pipeline.io import sha256_file
from pipeline.rundir import RunFolder, default_run_dir, stage_key
from pipeline.video import probe

STAGES = ("people", "speech", "link", "answer")
Progress = Callable[[str, str], None]


def _quiet(stage: str, message: str) -> None:
    pass


@dataclass(frozen=True)
class RunRequest:
    video: Path
    config: Config = field(default_factory=Config)
    out: Path | None = None  # None: socialpipe_runs/<stem>-<hash>
    question: str | None = None
    options: tuple[str, ...] = ()
    tracks_file: Path | None = None  # ground truth for the people stage
    transcript_file: Path | None = None  # ground truth for the speech stage
    links_file: Path | None = None  # ground truth for the link stage
    until: str = "answer"  # last stage to run
    force: bool = False  # recompute stages even when their artifacts are up to date

    def __post_init__(self) -> None:
        if self.until not in STAGES:
            raise InputError(f"--until {self.until!r}: expected one of {list(STAGES)}")
        if self.question is not None and not self.question.strip():
            raise InputError("--question is empty; expected a question such as 'Who is Alice talking to?'")
        for flag, path in (("--tracks", self.tracks_file), ("--transcript", self.transcript_file),
                           ("--links", self.links_file)):
            if path is not None and not Path(path).is_file():
                raise InputError(f"{flag} {path}: no such file")


@dataclass
class RunResult:
    folder: RunFolder
    video: VideoInfo
    tracks: Tracks | None = None
    transcript: Transcript | None = None
    links: SpeakerLinks | None = None
    answer: Answer | None = None
    stopped_after: str = "video"
    notes: list[str] = field(default_factory=list)


class Run:
    """One pipeline run over one video; ``execute()`` performs the steps in order."""

    def __init__(self, request: RunRequest, progress: Progress = _quiet):
        self.request = request
        self.progress = progress

    def execute(self) -> RunResult:
        request = self.request
        # 0. the video: probe it before anything is written
        video = probe(request.video)
        video_sha = sha256_file(request.video)
        folder = RunFolder.open(request.out or default_run_dir(Path(request.video), video_sha), Path(request.video),
                                video_sha)
        request.config.save(folder.path / "config.yaml")
        result = RunResult(folder=folder, video=video)
        self._step(result, "video", stage_key("video", video_sha), lambda: video,
                   source="probe", inputs={"video": {"path": str(request.video), "sha256": video_sha}})
        self.progress("video", f"{video.path}: {video.width}x{video.height}, {video.fps:g} fps, "
                               f"{video.duration_s:.1f} s, {'with' if video.has_audio else 'no'} audio")

        # 1. people
        result.tracks = self._people(result, video_sha)
        if request.until == "people":
            return self._stop(result, "people")
        # 2. speech
        result.transcript = self._speech(result, video_sha)
        if request.until == "speech":
            return self._stop(result, "speech")
        # 3. link
        result.links = self._link(result)
        if request.until == "link":
            return self._stop(result, "link")
        # 4. answer
        if request.question is None:
            result.notes.append("no --question given: stopped after the link stage")
            return self._stop(result, "link")
        result.answer = self._answer(result)
        return self._stop(result, "answer")

    # ------------------------------------------------------------------ steps

    def _people(self, result: RunResult, video_sha: str) -> Tracks:
        given = self.request.tracks_file
        export = lambda t: write_mot(t, result.folder.path / "people.mot.csv")  # noqa: E731
        if given is None:
            from stages.people import PeopleStage

            settings = self.request.config.people
            key = stage_key("people", video_sha, asdict(settings))
            return self._step(result, "people", key, lambda: PeopleStage(settings).run(result.video),
                              source=f"people stage ({settings.detector}, {settings.tracker})",
                              inputs={"settings": asdict(settings)}, exports=export)
        return self._from_file(result, "people", "tracks", given, lambda path: load_tracks(path, result.video.fps),
                               lambda tracks: tracks.validate_against(result.video), [video_sha], export)

    def _speech(self, result: RunResult, video_sha: str) -> Transcript:
        given = self.request.transcript_file

        def export(transcript: Transcript) -> None:
            write_rttm(transcript, result.folder.path / "speech.rttm", uri=Path(result.video.path).stem)
            write_vtt(transcript, result.folder.path / "speech.vtt")

        if given is None:
            if not result.video.has_audio:
                raise NoAudioError(f"{result.video.path}: has no audio track; the speech stage needs one "
                                   "(or give the transcript with --transcript FILE)")
            from stages.speech import SpeechStage

            settings = self.request.config.speech
            key = stage_key("speech", video_sha, asdict(settings))
            return self._step(result, "speech", key, lambda: SpeechStage(settings).run(result.video),
                              source=f"speech stage ({settings.asr_model}, {settings.diarization} diarization)",
                              inputs={"settings": asdict(settings)}, exports=export)
        return self._from_file(result, "speech", "transcript", given, load_transcript,
                               lambda transcript: transcript.validate_against(result.video), [video_sha], export)

    def _link(self, result: RunResult) -> SpeakerLinks:
        given = self.request.links_file
        if given is None:
            from stages.link import LinkStage

            settings = self.request.config.link
            key = stage_key("link", result.folder.key_of("people"), result.folder.key_of("speech"), asdict(settings))
            return self._step(result, "link", key,
                              lambda: LinkStage(settings).run(result.video, result.tracks, result.transcript),
                              source="link stage (mouth activity x speech activity)",
                              inputs={"settings": asdict(settings)})
        return self._from_file(result, "link", "links", given, load_links,
                               lambda links: links.validate_against(result.tracks, result.transcript),
                               [result.folder.key_of("people"), result.folder.key_of("speech")])

    def _answer(self, result: RunResult) -> Answer:
        from stages.answer.stage import AnswerStage

        config, request, folder = self.request.config, self.request, result.folder
        key = stage_key("answer", folder.key_of("people"), folder.key_of("speech"), folder.key_of("link"),
                        asdict(config.answer), request.question, list(request.options))
        stage = AnswerStage(config.answer, head_expand=config.people.head_expand)
        return self._step(result, "answer", key,
                          lambda: stage.run(result.video, result.tracks, result.transcript, result.links,
                                            request.question, request.options, folder.path / "attention.png"),
                          source=f"answer stage ({config.answer.model}, {config.answer.variant})",
                          inputs={"question": request.question, "options": list(request.options),
                                  "settings": asdict(config.answer)})

    # ------------------------------------------------------------------ machinery

    def _from_file(self, result: RunResult, stage: str, name: str, path: Path, load: Callable[[Path], object],
                   check: Callable[[object], None], upstream: list, exports: Callable | None = None):
        """A ground-truth file in place of a stage: loaded, checked against the video and the earlier
        artifacts (errors name the file), and written as the stage's artifact."""
        inputs = _ground_truth_input(name, path)

        def make():
            artifact = load(path)
            _validated(path, lambda: check(artifact))
            return artifact

        return self._step(result, stage, stage_key(stage, *upstream, inputs), make, source=f"ground truth: {path}",
                          inputs=inputs, exports=exports)

    def _step(self, result: RunResult, stage: str, key: str, make: Callable, source: str,
              inputs: dict[str, str], exports: Callable | None = None):
        folder = result.folder
        artifact_type = {"video": VideoInfo, "people": Tracks, "speech": Transcript, "link": SpeakerLinks,
                         "answer": Answer}[stage]
        if folder.is_current(stage, key) and not self.request.force:
            if stage != "video":
                self.progress(stage, f"up to date, kept {folder.file(stage)}")
            return load_json(artifact_type, folder.file(stage))
        started = time.perf_counter()
        artifact = make()
        artifact.save(folder.file(stage))
        if exports is not None:
            exports(artifact)
        seconds = time.perf_counter() - started
        folder.record(stage, key, source, seconds, inputs)
        if stage != "video":
            self.progress(stage, f"wrote {folder.file(stage)} ({source}, {seconds:.2f} s)")
        return artifact

    def _stop(self, result: RunResult, stage: str) -> RunResult:
        result.stopped_after = stage
        return result


def _ground_truth_input(name: str, path: Path) -> dict[str, dict[str, str]]:
    return {name: {"path": str(path), "sha256": sha256_file(path)}}


def _validated(path: Path, check: Callable[[], None]) -> None:
    """Run a consistency check, naming the ground-truth file in its error."""
    try:
        check()
    except InputError as exc:
        raise InputError(f"{path}: {exc}") from None


def run(request: RunRequest, progress: Progress = _quiet) -> RunResult:
    return Run(request, progress).execute()

"""The run, as numbered steps: video -> people -> speech -> link -> answer.

Each step writes its artifact atomically into the run folder, is skipped when an up-to-date
artifact exists (same inputs and settings), and reports through one progress hook. Ground truth
given for a step replaces that step; its file is validated against the video (and the earlier
artifacts) first. The steps, their files and their inputs come from
:mod:`socialpipe.pipeline.stage_table`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from socialpipe.pipeline.artifacts import Answer, SpeakerLinks, Tracks, Transcript, VideoInfo, load_json
from socialpipe.pipeline.config import Config
from socialpipe.pipeline.errors import InputError
from socialpipe.pipeline.formats import load_links, load_tracks, load_transcript
from socialpipe.pipeline.io import sha256_file
from socialpipe.pipeline.progress import ProgressEvent, ProgressHook, quiet
from socialpipe.pipeline.rundir import RunFolder, default_run_dir, stage_key
from socialpipe.pipeline.stage_table import HEATMAP_FILE, STAGE_NAMES, StageSpec, spec_of
from socialpipe.pipeline.video import probe


def check_run_options(until: str, question: str | None) -> None:
    """What a run's options must be whatever the video: a known last stage, a question with words in it."""
    if until not in STAGE_NAMES:
        raise InputError(f"--until {until!r}: expected one of {list(STAGE_NAMES)}")
    if question is not None and not question.strip():
        raise InputError("--question is empty; expected a question such as 'Who is Alice talking to?'")


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
    unlisted_off_screen: bool = False  # voices the given links do not name are off screen (else an error)
    until: str = "answer"  # last stage to run
    force: bool = False  # recompute stages even when their artifacts are up to date

    def __post_init__(self) -> None:
        check_run_options(self.until, self.question)
        for stage, path in self.ground_truth.items():
            if not Path(path).is_file():
                raise InputError(f"--{spec_of(stage).ground_truth_option} {path}: no such file")

    @property
    def ground_truth(self) -> dict[str, Path]:
        """Stage name -> the ground-truth file given in its place."""
        given = {"people": self.tracks_file, "speech": self.transcript_file, "link": self.links_file}
        return {stage: Path(path) for stage, path in given.items() if path is not None}


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


_RESULT_FIELD = {"people": "tracks", "speech": "transcript", "link": "links", "answer": "answer"}


class Run:
    """One pipeline run over one video; ``execute()`` performs the steps in order."""

    def __init__(self, request: RunRequest, progress: ProgressHook = quiet):
        self.request = request
        self.progress = progress

    def execute(self) -> RunResult:
        request = self.request
        # 0. the video: probe it before anything is written
        video = probe(request.video)
        self._check_stages(video)
        video_sha = sha256_file(request.video)
        folder = RunFolder.open(request.out or default_run_dir(Path(request.video), video_sha), Path(request.video),
                                video_sha)
        try:
            request.config.save(folder.path / "config.yaml")
            return self._steps(RunResult(folder=folder, video=video), video_sha)
        finally:
            folder.close()

    def _steps(self, result: RunResult, video_sha: str) -> RunResult:
        request, video = self.request, result.video
        self._step(result, spec_of("video"), stage_key("video", video_sha), lambda: video, source="probe",
                   inputs={"video": {"path": str(request.video), "sha256": video_sha}})
        self.progress(ProgressEvent("video", message=f"{video.path}: {video.width}x{video.height}, {video.fps:g} fps, "
                                                     f"{video.duration_s:.1f} s, "
                                                     f"{'with' if video.has_audio else 'no'} audio"))
        # 1-4. people, speech, link, answer
        for name in STAGE_NAMES:
            if name == "answer" and request.question is None:
                result.notes.append("no --question given: stopped after the link stage")
                break
            setattr(result, _RESULT_FIELD[name], self._stage(result, spec_of(name)))
            result.stopped_after = name
            if name == request.until:
                break
        return result

    # ------------------------------------------------------------------ stages

    def _stage(self, result: RunResult, spec: StageSpec):
        """One stage: from its ground-truth file when one is given, else by running it."""
        upstream = [result.folder.key_of(name) for name in spec.reads]
        given = self.request.ground_truth.get(spec.name)
        if given is not None:
            return self._from_file(result, spec, given, upstream)
        settings = getattr(self.request.config, spec.config_section)
        make, source = self._runner(spec.name, result)
        key = stage_key(spec.name, *upstream, asdict(settings),
                        *((self.request.question, list(self.request.options)) if spec.name == "answer" else ()))
        inputs = {"settings": asdict(settings)}
        if spec.name == "answer":
            inputs.update(question=self.request.question, options=list(self.request.options))
        return self._step(result, spec, key, make, source=source, inputs=inputs)

    def _check_stages(self, video: VideoInfo) -> None:
        """Before anything is written: what the stages that will run can tell now (no audio for speech, a
        CUDA device that is not there)."""
        request, config = self.request, self.request.config
        will_run = [name for name in STAGE_NAMES[:STAGE_NAMES.index(request.until) + 1]
                    if name not in request.ground_truth and (name != "answer" or request.question is not None)]
        if "speech" in will_run:
            from socialpipe.stages.speech import SpeechStage

            SpeechStage(config.speech).check(video)
        if "link" in will_run:
            from socialpipe.stages.link import LinkStage

            LinkStage(config.link).check()
        if "answer" in will_run:
            from socialpipe.stages.answer import AnswerStage

            AnswerStage(config.answer).check()

    def _runner(self, stage: str, result: RunResult) -> tuple[Callable[[], object], str]:
        """(make the stage's artifact, where it comes from in words) for a stage that runs."""
        config, request, video, hook = self.request.config, self.request, result.video, self.progress
        if stage == "people":
            from socialpipe.stages.people import PeopleStage

            return (lambda: PeopleStage(config.people).run(video, hook),
                    f"people stage ({config.people.detector}, {config.people.tracker})")
        if stage == "speech":
            from socialpipe.stages.speech import SpeechStage

            return (lambda: SpeechStage(config.speech).run(video, hook),
                    f"speech stage ({config.speech.asr_model}, {config.speech.diarization} diarization)")
        if stage == "link":
            from socialpipe.stages.link import LinkStage

            return (lambda: LinkStage(config.link).run(video, result.tracks, result.transcript, hook),
                    "link stage (LR-ASD active speaker x speech activity)")
        from socialpipe.stages.answer import AnswerStage

        stage_runner = AnswerStage(config.answer, head_expand=config.people.head_expand)
        return (lambda: stage_runner.run(video, result.tracks, result.transcript, result.links, request.question,
                                         request.options, result.folder.path / HEATMAP_FILE),
                f"answer stage ({config.answer.model}, {config.answer.variant})")

    def _from_file(self, result: RunResult, spec: StageSpec, path: Path, upstream: list):
        """A ground-truth file in place of a stage: loaded, checked against the video and the earlier
        artifacts (errors name the file), and written as the stage's artifact."""
        name = spec.ground_truth_option
        inputs = {name: {"path": str(path), "sha256": sha256_file(path)}}
        video = result.video
        load, check = {
            "people": (lambda: load_tracks(path, video.fps), lambda tracks: tracks.validate_against(video)),
            "speech": (lambda: load_transcript(path), lambda transcript: transcript.validate_against(video)),
            "link": (lambda: self._given_links(path, result.transcript),
                     lambda links: links.validate_against(result.tracks, result.transcript)),
        }[spec.name]
        if spec.name == "link" and self.request.unlisted_off_screen:
            inputs["unlisted_off_screen"] = True

        def make():
            artifact = load()
            try:
                check(artifact)
            except InputError as exc:
                raise InputError(f"{path}: {exc}") from None
            return artifact

        return self._step(result, spec, stage_key(spec.name, *upstream, inputs), make,
                          source=f"ground truth: {path}", inputs=inputs)

    def _given_links(self, path: Path, transcript: Transcript) -> SpeakerLinks:
        links = load_links(path)
        return links.with_unlisted_off_screen(transcript) if self.request.unlisted_off_screen else links

    # ------------------------------------------------------------------ machinery

    def _step(self, result: RunResult, spec: StageSpec, key: str, make: Callable, source: str, inputs: dict):
        folder, stage = result.folder, spec.name
        if folder.is_current(stage, key) and not self.request.force:
            artifact = load_json(spec.artifact, folder.file(stage))
            for export in spec.exports:  # an export deleted by hand is made again from the kept artifact
                if not (folder.path / export.file).exists():
                    export.write(artifact, folder.path / export.file, result.video)
            if stage != "video":
                self.progress(ProgressEvent(stage, message=f"up to date, kept {folder.file(stage)}"))
            return artifact
        started = time.perf_counter()
        artifact = make()
        artifact.save(folder.file(stage))
        for export in spec.exports:
            export.write(artifact, folder.path / export.file, result.video)
        seconds = time.perf_counter() - started
        folder.record(stage, key, source, seconds, inputs)
        if stage != "video":
            self.progress(ProgressEvent(stage, message=f"wrote {folder.file(stage)} ({source}, {seconds:.2f} s)"))
        return artifact


def run(request: RunRequest, progress: ProgressHook = quiet) -> RunResult:
    return Run(request, progress).execute()

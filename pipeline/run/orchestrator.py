"""The run, as numbered steps: video -> people -> speech -> link -> answer.

Each step writes its artifact atomically into the run folder, is skipped when an up-to-date
artifact exists (same inputs and settings), and reports through one progress hook. Ground truth
given for a step replaces that step; its file is validated against the video (and the earlier
artifacts) first. The steps, their files and their inputs come from
:mod:`socialpipe.pipeline.run.stage_table`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from socialpipe.pipeline.contracts.artifacts import Answer, SpeakerLinks, Tracks, Transcript, VideoInfo, load_json
from socialpipe.pipeline.contracts.config import Config
from socialpipe.pipeline.contracts.errors import InputError
from socialpipe.pipeline.contracts.io import not_a_regular_file, sha256_file
from socialpipe.pipeline.contracts.outputs import wanted_formats, write_outputs
from socialpipe.pipeline.contracts.progress import ProgressEvent, ProgressHook, Timer, quiet
from socialpipe.pipeline.contracts.stage import Stage, StageInputs
from socialpipe.pipeline.media.video import probe
from socialpipe.pipeline.run.rundir import RunFolder, default_run_dir, stage_key
from socialpipe.pipeline.run.naming import read_gallery, resolve_names
from socialpipe.pipeline.run.stage_table import NAMES_FILE, STAGE_NAMES, STAGE_TABLE, StageSpec, spec_of


def check_run_options(until: str, question: str | None) -> None:
    """What a run's options must be whatever the video: a known last stage, a question with words in it."""
    if until not in STAGE_NAMES:
        raise InputError(f"--until {until!r}: expected one of {list(STAGE_NAMES)}")
    if question is not None and not question.strip():
        raise InputError("--question is empty; expected a question such as 'Who is Alice talking to?'")


def check_output_formats(formats: tuple[str, ...], until: str) -> None:
    """Known formats, and a run that makes the transcript they are written from."""
    wanted_formats(formats)
    if formats and STAGE_NAMES.index(until) < STAGE_NAMES.index("speech"):
        raise InputError("--output-format needs the speech stage's transcript; expected --until speech or later")


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
    output_formats: tuple[str, ...] = ()  # also write transcript.<format> (OUTPUT_FORMATS, or "all")
    names: Mapping[str, str] = field(default_factory=dict)  # label (voice or PERSON_<id>) -> name
    gallery: Path | None = None  # a folder of reference photos and voice samples (naming.read_gallery)

    def __post_init__(self) -> None:
        check_run_options(self.until, self.question)
        check_output_formats(self.output_formats, self.until)
        for stage, path in self.ground_truth.items():
            why = not_a_regular_file(path)
            if why is not None:
                raise InputError(f"--{spec_of(stage).ground_truth_option} {path}: {why}; expected a ground-truth file")
        named = next((spec for spec in STAGE_TABLE if spec.named), None)
        if (self.names or self.gallery is not None) and named is not None and \
                STAGE_NAMES.index(self.until) < STAGE_NAMES.index(named.name):
            raise InputError(f"--name and --gallery name the {named.name} stage's voices and persons; expected "
                             f"--until {named.name} or later")
        if self.gallery is not None:
            read_gallery(self.gallery)  # a folder with photos or voice samples in it, or a one-line error now

    @property
    def naming(self) -> dict[str, Any] | None:
        """The names asked for, and the gallery's files with their hashes (what the answer depends on)."""
        if not self.names and self.gallery is None:
            return None
        return {"names": dict(sorted(self.names.items())),
                "gallery": None if self.gallery is None else read_gallery(self.gallery).key}

    @property
    def ground_truth(self) -> dict[str, Path]:
        """Stage name -> the ground-truth file given in its place (the ``<option>_file`` fields)."""
        given = {spec.name: getattr(self, f"{spec.ground_truth_option}_file")
                 for spec in STAGE_TABLE if spec.ground_truth_option}
        return {stage: Path(path) for stage, path in given.items() if path is not None}

    def stages_to_run(self) -> list[StageSpec]:
        """The stages up to ``until`` that stand before a missing required option (``--question``)."""
        specs = []
        for spec in STAGE_TABLE[:STAGE_NAMES.index(self.until) + 1]:
            if spec.requires and getattr(self, spec.requires) is None:
                break
            specs.append(spec)
        return specs


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
    written: list[Path] = field(default_factory=list)  # the transcript.<format> files asked for


class Run:
    """One pipeline run over one video; ``execute()`` performs the steps in order."""

    def __init__(self, request: RunRequest, progress: ProgressHook = quiet):
        self.request = request
        self.progress = progress

    def execute(self) -> RunResult:
        request = self.request
        # 0. the video: probe it, and ask each stage that will run what it can tell now, before anything is written
        video = probe(request.video)
        stages = self._build_and_check(video)
        video_sha = sha256_file(request.video)
        folder = RunFolder.open(request.out or default_run_dir(Path(request.video), video_sha), Path(request.video),
                                video_sha)
        try:
            request.config.save(folder.path / "config.yaml")
            result = self._steps(RunResult(folder=folder, video=video), video_sha, stages)
            if request.output_formats:
                result.written = write_outputs(result.transcript, result.links, folder.path, request.output_formats,
                                               uri=Path(video.path).stem,
                                               language=result.transcript.meta.get("language"))
            return result
        finally:
            folder.close()

    def _build_and_check(self, video: VideoInfo) -> dict[str, Stage]:
        """The stages that will run (not replaced by ground truth), built and checked (no audio for speech, a
        CUDA device that is not there, weights that cannot be read)."""
        request = self.request
        stages = {spec.name: spec.build(request.config) for spec in request.stages_to_run()
                  if spec.name not in request.ground_truth}
        for stage in stages.values():
            stage.check(StageInputs(video))
        return stages

    def _steps(self, result: RunResult, video_sha: str, stages: dict[str, Stage]) -> RunResult:
        request, video = self.request, result.video
        # video.json names the video by its absolute path: the run folder works from any working folder
        self._step(result, spec_of("video"), stage_key("video", video_sha),
                   lambda: replace(video, path=str(Path(video.path).resolve())), source="probe",
                   inputs={"video": {"path": str(request.video), "sha256": video_sha}})
        self.progress(ProgressEvent("video", message=f"{video.path}: {video.width}x{video.height}, {video.fps:g} fps, "
                                                     f"{video.duration_s:.1f} s, "
                                                     f"{'with' if video.has_audio else 'no'} audio"))
        to_run = request.stages_to_run()
        for spec in to_run:
            setattr(result, spec.result, self._stage(result, spec, stages.get(spec.name)))
            if spec.named:
                setattr(result, spec.result, self._names(result, spec))
            result.stopped_after = spec.name
        stopped = STAGE_TABLE[len(to_run)] if len(to_run) < STAGE_NAMES.index(request.until) + 1 else None
        if stopped is not None:
            result.notes.append(f"no --{stopped.requires} given: stopped after the {result.stopped_after} stage")
        return result

    def _inputs(self, result: RunResult) -> StageInputs:
        request = self.request
        return StageInputs(result.video, result.tracks, result.transcript, result.links, request.question,
                           tuple(request.options), result.folder.path, request.unlisted_off_screen)

    # ------------------------------------------------------------------ stages

    def _stage(self, result: RunResult, spec: StageSpec, stage: Stage | None):
        """One stage: from its ground-truth file when one is given, else by running it."""
        upstream = [result.folder.key_of(name) for name in spec.reads]
        given = self.request.ground_truth.get(spec.name)
        if given is not None:
            return self._from_file(result, spec, given, upstream)
        settings = asdict(getattr(self.request.config, spec.config_section))
        extra = {name: _plain(getattr(self.request, name)) for name in spec.request_inputs}
        key = stage_key(spec.name, *upstream, settings, *extra.values())
        inputs = self._inputs(result)
        return self._step(result, spec, key, lambda: stage.run(inputs, self.progress),
                          source=spec.describe(self.request.config), inputs={"settings": settings, **extra})

    def _from_file(self, result: RunResult, spec: StageSpec, path: Path, upstream: list):
        """A ground-truth file in place of a stage: loaded, checked against the video and the earlier
        artifacts (errors name the file), and written as the stage's artifact."""
        inputs = {spec.ground_truth_option: {"path": str(path), "sha256": sha256_file(path)}}
        inputs.update({flag: True for flag in spec.given_flags if getattr(self.request, flag)})
        stage_inputs = self._inputs(result)

        def make():
            artifact = spec.load_given(path, stage_inputs)
            try:
                spec.validate(artifact, stage_inputs)
            except InputError as exc:
                raise InputError(f"{path}: {exc}") from None
            return artifact

        return self._step(result, spec, stage_key(spec.name, *upstream, inputs), make,
                          source=f"ground truth: {path}", inputs=inputs)

    def _names(self, result: RunResult, spec: StageSpec):
        """The run's names applied to the stage's artifact: found (``naming.resolve_names``), kept in names.json,
        and the stage's exports written again with them; a run without names removes an earlier names.json."""
        request, folder = self.request, result.folder.path
        artifact, path = getattr(result, spec.result), folder / NAMES_FILE
        had = path.exists()
        if request.names or request.gallery is not None:
            gallery = None if request.gallery is None else read_gallery(request.gallery)
            names = resolve_names(request.names, gallery, result.tracks, result.transcript, artifact, request.config)
            artifact = artifact.named(names.names)  # a label the run does not have: one line, names.json kept
            names.save(path)
            self.progress(ProgressEvent(spec.name, message=f"names: {len(names.names)} given or matched, in {path}"))
        elif had:
            path.unlink()
        if path.exists() or had:
            for export in spec.exports:
                export.write(artifact, folder / export.file, result.video)
        return artifact

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
        if not self.request.force and folder.edited(stage):  # hashed here only when the file was not kept
            self.progress(ProgressEvent(stage, message=f"{folder.file(stage)} was changed after the run wrote it "
                                                       "(its sha256 is not the recorded one): made again"))
        timer = Timer(stage)
        with timer(stage):
            artifact = make()
            artifact.save(folder.file(stage))
            for export in spec.exports:
                export.write(artifact, folder.path / export.file, result.video)
        seconds = timer.totals[stage]
        folder.record(stage, key, source, seconds, inputs)
        if stage != "video":
            self.progress(ProgressEvent(stage, message=f"wrote {folder.file(stage)} ({source}, {seconds:.2f} s)"))
        return artifact


def _plain(value):
    """A request option as JSON would hold it (tuples as lists)."""
    return list(value) if isinstance(value, tuple) else value


def run(request: RunRequest, progress: ProgressHook = quiet) -> RunResult:
    return Run(request, progress).execute()

"""The ``socialpipe`` command: run, batch, inspect, view, score, eval, finetune."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import click

from socialpipe.pipeline import __version__
from socialpipe.pipeline.contracts.config import option_overrides
from socialpipe.pipeline.contracts.errors import InputError, SocialpipeError
from socialpipe.pipeline.contracts.progress import ProgressEvent
from socialpipe.pipeline.run.stage_table import STAGE_NAMES

STAGE_CHOICE = click.Choice(list(STAGE_NAMES))
VARIANT_CHOICE = click.Choice(["none", "box", "visual", "align"])
DATASET_CHOICE = click.Choice(["tvqa+", "mmsi", "onlinemmsi"])
DTYPES = {"auto": "auto", "bf16": "bfloat16", "bfloat16": "bfloat16", "fp16": "float16", "float16": "float16",
          "fp32": "float32", "float32": "float32"}
_existing = click.Path(path_type=Path)


class _Number(click.ParamType):
    """A finite float inside [low, high] (NaN and the infinities refused; click's FloatRange lets NaN through)."""

    name = "number"

    def __init__(self, low: float, high: float | None = None):
        self.low, self.high = low, high

    def convert(self, value, param, ctx):
        try:
            number = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a number", param, ctx)
        if not math.isfinite(number) or number < self.low or (self.high is not None and number > self.high):
            span = f"[{self.low:g}, {self.high:g}]" if self.high is not None else f">= {self.low:g}"
            self.fail(f"{value!r} is outside {span}; expected a finite number in it", param, ctx)
        return number


_IOU, _SECONDS, _FPS = _Number(0.0, 1.0), _Number(0.0), _Number(1e-3, 1e4)


# Each perception stage's share of the run's time (benchmarks/perception.py on the sample, 2 cores), for the
# overall line's estimate; "speaking" is the link stage's active-speaker counter.
STAGE_SHARES = {"people": 0.58, "speech": 0.14, "link": 0.28}
COUNTED_AS = {"speaking": "link"}


class BarProgress:
    """The CLI's progress hook: a tqdm bar on stderr per stage with countable work (drawn on a terminal only),
    every status line printed as ``[stage] message``, and, given the perception stages a run will make, one
    overall line whose remaining time weighs each stage by its usual share (a stage kept up to date drops out)."""

    def __init__(self, stages: tuple[str, ...] = ()):
        self.bars: dict[str, object] = {}
        self.fraction = {stage: 0.0 for stage in stages if stage in STAGE_SHARES}
        self.overall = None

    def _advance_overall(self, event: ProgressEvent) -> None:
        from tqdm import tqdm

        stage = COUNTED_AS.get(event.stage, event.stage)
        if stage not in self.fraction or len(self.fraction) < 2:
            return
        if event.message is not None and event.message.startswith("up to date"):
            del self.fraction[stage]
        elif event.message is not None and event.message.startswith("wrote"):
            self.fraction[stage] = 1.0
        elif event.total and event.done is not None and (event.stage in COUNTED_AS or stage not in COUNTED_AS.values()):
            self.fraction[stage] = max(self.fraction[stage], 0.95 * event.done / event.total)
        if self.overall is None:
            self.overall = tqdm(total=100, desc="run", file=sys.stderr, disable=None, leave=False,
                                bar_format="{desc}: {percentage:3.0f}%|{bar}| [{elapsed}<{remaining}]")
        self.overall.update(max(self.overall_percent() - self.overall.n, 0))

    def overall_percent(self) -> float:
        """How much of the run is done, in percent: the stages' done fractions weighed by their shares."""
        weights = sum(STAGE_SHARES[s] for s in self.fraction) or 1.0
        return 100 * sum(STAGE_SHARES[s] * f for s, f in self.fraction.items()) / weights

    def __call__(self, event: ProgressEvent) -> None:
        from tqdm import tqdm

        self._advance_overall(event)
        if event.total is not None:
            whole = float(event.total).is_integer()  # frames, steps: counted in integers, not "36.0/942"
            bar = self.bars.get(event.stage)
            if bar is None:
                counts = "{n_fmt}/{total_fmt}" if whole else "{n:.1f}/{total:.1f}"
                bar = self.bars[event.stage] = tqdm(
                    total=int(event.total) if whole else event.total, unit=event.unit or "it", desc=event.stage,
                    file=sys.stderr, disable=None, leave=False,
                    bar_format="{l_bar}{bar}| " + counts + " {unit} [{elapsed}<{remaining}]")
            done = event.done or 0
            bar.update((int(done) if whole else done) - bar.n)
            if event.done is not None and event.done >= event.total:
                self.bars.pop(event.stage).close()
        if event.message is not None:
            tqdm.write(f"[{event.stage}] {event.message}", file=sys.stderr)

    def __enter__(self) -> BarProgress:
        return self

    def __exit__(self, *exc_info) -> None:
        for bar in [*self.bars.values(), *([self.overall] if self.overall is not None else [])]:
            bar.close()
        self.bars.clear()
        self.overall = None


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="socialpipe")
def cli() -> None:
    """Answer social questions about conversation video: who speaks, to whom, about whom."""


def _pipeline_options(command):
    """What ``run`` and ``batch`` share: the question, the last stage, settings and the answer model."""
    options = [
        click.option("--question", help="The question to answer about the video."),
        click.option("--option", "options", multiple=True, help="A multiple-choice option (repeat for each)."),
        click.option("--unlisted-off-screen", is_flag=True,
                     help="Voices of the transcript that the given links do not name are off screen "
                          "(default: an error)."),
        click.option("--until", type=STAGE_CHOICE, default="answer", show_default=True, help="Last stage to run."),
        click.option("--config", "config_path", type=_existing,
                     help="A YAML config (see configs/). Default: built-in defaults."),
        click.option("--set", "overrides", multiple=True, metavar="SECTION.KEY=VALUE", help="Override one setting."),
        click.option("--model", help="Answer model: a hub id or a local folder (same as --set answer.model=...)."),
        click.option("--adapter", type=_existing,
                     help="A LoRA adapter folder from socialpipe finetune, applied to --model."),
        click.option("--language", help="The spoken language (en, de, ...; auto: detect it). Not English needs a "
                                        "multilingual --set speech.asr_model."),
        click.option("--num-speakers", type=click.IntRange(min=1), help="The number of voices, when known."),
        click.option("--min-speakers", type=click.IntRange(min=1), help="At least this many voices."),
        click.option("--max-speakers", type=click.IntRange(min=1), help="At most this many voices."),
        click.option("--device", help="Where every model runs: cpu, cuda, cuda:N or auto (cuda when there is one; "
                                      "dlib's face embedding stays on the CPU). Default: cpu, answer auto."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


@cli.command()
@click.argument("video", type=_existing)
@click.option("--out", type=_existing, help="Run folder. Default: socialpipe_runs/<video>-<hash>.")
@click.option("--tracks", type=_existing, help="Ground-truth tracks (.json or MOT .csv) instead of the people stage.")
@click.option("--transcript", type=_existing,
              help="Ground-truth transcript (.json, socialpipe's or WhisperX's; .rttm, .vtt or .srt) instead of "
                   "the speech stage.")
@click.option("--links", type=_existing, help="Ground-truth voice -> track links (.json) instead of the link stage.")
@_pipeline_options
@click.option("--force", is_flag=True, help="Recompute stages even when their artifacts are up to date.")
@click.option("--output-format", "output_formats", multiple=True,
              type=click.Choice(["srt", "vtt", "txt", "tsv", "json", "rttm", "all"]),
              help="Also write the transcript as transcript.<format> in the run folder, speakers named by person "
                   "(repeat, or all).")
@click.option("--name", "name_pairs", multiple=True, metavar="LABEL=NAME",
              help="Name a voice (SPEAKER_00=Alice) or a person (PERSON_02=Bob) in every output (repeat).")
@click.option("--names", "names_file", type=_existing, help="A YAML or JSON map of LABEL: NAME (as --name).")
@click.option("--gallery", type=_existing,
              help="A folder of reference photos (NAME.jpg or NAME/*.jpg) and voice samples (NAME.wav) matched to "
                   "the run's persons and voices by face and voice embedding.")
@click.option("-q", "--quiet", is_flag=True, help="Print nothing but errors (and the answer, or --json).")
@click.option("-v", "--verbose", is_flag=True, help="Also print where each stage spent its time.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON object on stdout.")
def run(video, out, question, options, tracks, transcript, links, unlisted_off_screen, until, config_path, overrides,
        model, adapter, language, num_speakers, min_speakers, max_speakers, device, force, output_formats, name_pairs,
        names_file, gallery, quiet, verbose, as_json):
    """Run the pipeline on VIDEO and write every stage's artifact to the run folder."""
    from socialpipe.pipeline.contracts.config import load_config
    from socialpipe.pipeline.run.orchestrator import RunRequest
    from socialpipe.pipeline.run.orchestrator import run as run_pipeline

    overrides = list(overrides) + _answer_overrides(model=model, adapter=adapter) + \
        option_overrides(language, num_speakers, min_speakers, max_speakers, device)
    request = RunRequest(video=video, config=load_config(config_path, overrides), out=out, question=question,
                         options=tuple(options), tracks_file=tracks, transcript_file=transcript, links_file=links,
                         unlisted_off_screen=unlisted_off_screen, until=until, force=force,
                         output_formats=tuple(output_formats), names=given_names(names_file, name_pairs),
                         gallery=gallery)
    if quiet:
        result = run_pipeline(request)
    else:
        making = tuple(spec.name for spec in request.stages_to_run() if spec.name not in request.ground_truth)
        with BarProgress(making) as progress:
            result = run_pipeline(request, progress=progress)
    written = result.written
    if as_json:
        click.echo(json.dumps(_run_summary(result, written), sort_keys=True))
        return
    if result.answer is not None:
        click.echo(result.answer.text)
    if quiet:
        return
    for note in result.notes:
        click.echo(note, err=True)
    if verbose:
        for line in _timing_lines(result):
            click.echo(line, err=True)
    if written:
        click.echo("wrote " + ", ".join(str(p) for p in written), err=True)
    click.echo(f"run folder: {result.folder.path} (stopped after {result.stopped_after}); "
               f"see it with: socialpipe inspect {result.folder.path}", err=True)


def _timing_lines(result) -> list[str]:
    """``-v``: each stage's parts and their seconds, as its artifact recorded them (``meta.timing_s``)."""
    lines = []
    for stage, artifact in (("people", result.tracks), ("speech", result.transcript), ("link", result.links)):
        timing = (getattr(artifact, "meta", None) or {}).get("timing_s") or {}
        if timing:
            parts = ", ".join(f"{key.removesuffix('_s')} {seconds:.2f} s" for key, seconds in timing.items())
            lines.append(f"[{stage}] time: {parts}")
    return lines


def given_names(names_file: Path | None, pairs: tuple[str, ...]) -> dict[str, str]:
    """``--names FILE`` and ``--name LABEL=NAME`` as one map (``--name`` wins)."""
    from socialpipe.pipeline.run.naming import parse_names, read_names_file

    return {**(read_names_file(names_file) if names_file is not None else {}), **parse_names(pairs)}


def _run_summary(result, written: list[Path]) -> dict:
    """What ``run --json`` prints: the run folder, where it stopped, its files, counts, and the answer."""
    folder = result.folder.path
    summary = {"run_folder": str(folder), "stopped_after": result.stopped_after, "notes": list(result.notes),
               "video": {"path": result.video.path, "duration_s": result.video.duration_s},
               "files": sorted(p.name for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")),
               "written": [str(p) for p in written], "answer": None}
    if result.tracks is not None:
        summary["tracks"] = len(result.tracks.track_ids)
    if result.transcript is not None:
        summary["voices"] = result.transcript.speakers
    if result.links is not None:
        summary["links"] = {link.voice: link.track_id for link in result.links.links}
    if result.answer is not None:
        answer = result.answer
        summary["answer"] = {"text": answer.text, "options": list(answer.options), "chosen": answer.chosen_option,
                             "scores": None if answer.option_scores is None else list(answer.option_scores)}
    return summary


def _placement_options(command):
    """--workers, --ray [ADDRESS] and --threads: where the work of many videos or questions runs."""
    command = click.option("--threads", type=click.IntRange(min=1),
                           help="CPU threads per worker. Default: the machine's cores shared out among the workers.")(command)
    command = click.option("--ray", "ray_address", is_flag=False, flag_value="local", default=None, metavar="[ADDRESS]",
                           help="Run on Ray: --ray alone starts a local Ray; --ray ADDRESS joins a cluster "
                                "(ray://HEAD:10001, or auto). Needs pip install 'socialpipe[ray]'.")(command)
    return click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True,
                        help="Workers, each in its own process with its models loaded once.")(command)


def _placement(workers, ray_address, threads):
    from socialpipe.pipeline.run.parallel import Placement

    return Placement(workers=workers, ray=ray_address, threads=threads)


@cli.command()
@click.argument("inputs", nargs=-1, required=True, metavar="INPUT...")
@click.option("--out", type=_existing, required=True, help="Batch folder: one run folder per video, and batch.json.")
@click.option("--tracks-dir", type=_existing, help="Ground-truth tracks, a file per video named after it (clip.json).")
@click.option("--transcript-dir", type=_existing, help="Ground-truth transcripts, named after the videos.")
@click.option("--links-dir", type=_existing, help="Ground-truth links, named after the videos.")
@_pipeline_options
@_placement_options
@click.option("--return-folders", is_flag=True,
              help="With --ray on a cluster without a shared disk: workers send each run folder back to this machine.")
@click.option("--force", is_flag=True, help="Run every video again, recomputing every stage.")
@click.option("--gallery", type=_existing, help="Reference photos and voice samples naming the people of every video "
                                                "(as run --gallery).")
@click.option("--json", "as_json", is_flag=True, help="Print the batch record as one JSON object.")
def batch(inputs, out, question, options, tracks_dir, transcript_dir, links_dir, unlisted_off_screen, until,
          config_path, overrides, model, adapter, language, num_speakers, min_speakers, max_speakers, device, workers,
          ray_address, threads, return_folders, force, gallery, as_json):
    """Run the pipeline on many videos: INPUT is a folder, a glob, a text file of paths, or a video.

    Resumable: a re-run skips finished videos and retries failed ones. A video that fails is recorded
    with its error and the others go on; the exit status is then 3."""
    from socialpipe.pipeline.scaling.batch import BatchSettings, batch_table, run_batch
    from socialpipe.pipeline.contracts.config import load_config

    overrides = list(overrides) + _answer_overrides(model=model, adapter=adapter) + \
        option_overrides(language, num_speakers, min_speakers, max_speakers, device)
    settings = BatchSettings(config=load_config(config_path, overrides), until=until, question=question,
                             options=tuple(options), tracks_dir=tracks_dir, transcript_dir=transcript_dir,
                             links_dir=links_dir, unlisted_off_screen=unlisted_off_screen, force=force,
                             gallery=gallery)
    with BarProgress() as progress:
        record = run_batch(inputs, Path(out), settings, _placement(workers, ray_address, threads), return_folders,
                           progress)
    click.echo(json.dumps(record, sort_keys=True) if as_json else batch_table(record))
    if not as_json:
        click.echo(f"batch record: {Path(out) / 'batch.json'}; each run: socialpipe inspect {out}/<video>", err=True)
    if any(r["status"] != "done" for r in record["videos"].values()):
        sys.exit(3)  # finished, but some videos failed (each one's error is in the table and batch.json)


@cli.command()
@click.argument("run_dir", type=_existing)
@click.option("--render/--no-render", default=True, show_default=True,
              help="Write preview.mp4 and contact_sheet.png (into the run folder, or --render-to).")
@click.option("--render-to", type=_existing, help="Folder for the pictures instead of the run folder (one that is "
                                                  "read-only, or shared).")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as one JSON object on stdout (no pictures "
                                                     "unless --render).")
def inspect(run_dir, render, render_to, as_json):
    """Summarise a run folder and render a preview video and contact sheet."""
    from socialpipe.pipeline.presentation.report import (load_run, render_contact_sheet, render_preview, summary,
                                                         summary_data)

    contents = load_run(run_dir)
    if as_json:
        click.echo(json.dumps(summary_data(contents), sort_keys=True))
        render = render and click.get_current_context().get_parameter_source("render").name != "DEFAULT"
    else:
        click.echo(summary(contents))
    if render:
        folder = Path(render_to) if render_to is not None else contents.path
        try:
            sheet = render_contact_sheet(contents, folder / "contact_sheet.png")
            with BarProgress() as progress:
                preview = render_preview(contents, folder / "preview.mp4", progress=progress)
        except OSError as exc:
            raise InputError(f"{folder}: cannot write the preview and contact sheet there ({exc.strerror or exc}); "
                             "expected a writable folder: give --render-to DIR, or --no-render") from None
        click.echo(f"preview: {preview}\ncontact sheet: {sheet}", err=as_json)


@cli.command()
@click.argument("run_dir", type=_existing)
@click.option("--open/--no-open", "open_browser", default=True, show_default=True,
              help="Open the page in the browser, or only print its address.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(0, 65535), default=0, help="Port to listen on. Default: any free port.")
@click.option("--export", "export_file", type=_existing,
              help="Write one self-contained HTML page (it plays the video by a relative path) and exit.")
def view(run_dir, open_browser, host, port, export_file):
    """See a run in the browser: video with boxes, transcript, timeline, links and the answer."""
    from socialpipe.pipeline.presentation import viewer

    if export_file is not None:
        click.echo(f"wrote {viewer.export(run_dir, export_file)}")
        return
    served = viewer.serve(run_dir, host, port)
    click.echo(f"socialpipe view: {served.url} (Ctrl-C stops)")
    if open_browser:
        import webbrowser

        webbrowser.open(served.url)
    try:
        served.thread.join()
    except KeyboardInterrupt:
        served.stop()


@cli.group()
def score() -> None:
    """Score a stage's output against ground truth."""


def _emit(scores: dict, as_json: bool, title: str) -> None:
    if as_json:
        click.echo(json.dumps(scores, sort_keys=True))
        return
    click.echo(title)
    for key, value in scores.items():
        if isinstance(value, dict):
            continue
        click.echo(f"  {key:<22} {value:.4f}" if isinstance(value, float) else f"  {key:<22} {value}")


def _track_scoring(name: str, pred_help: str, gt_help: str, summary: str):
    """A ``score`` command comparing predicted tracks with ground-truth tracks (``score people``, ``score persons``)
    with the scorer of that name in ``socialpipe.pipeline.evaluation.scoring``."""

    @score.command(name, help=summary)
    @click.option("--pred", type=_existing, required=True, help=pred_help)
    @click.option("--gt", type=_existing, required=True, help=gt_help)
    @click.option("--fps", type=_FPS, help="Frame rate for MOT csv files (JSON tracks carry their own).")
    @click.option("--min-iou", type=_IOU, default=0.5, show_default=True, help="IoU a match needs.")
    @click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
    def command(pred, gt, fps, min_iou, as_json):
        from socialpipe.pipeline.contracts.formats import load_tracks
        from socialpipe.pipeline.evaluation import scoring

        gt_tracks = load_tracks(gt, fps if fps else _json_fps(gt, pred))
        pred_tracks = load_tracks(pred, fps if fps else gt_tracks.fps)
        scores = getattr(scoring, f"score_{name}")(pred_tracks, gt_tracks, min_iou)
        _emit(scores, as_json, f"{name}: {pred} against {gt}")

    return command


score_people_cmd = _track_scoring("people", "Predicted tracks (.json or MOT .csv).",
                                  "Ground-truth tracks (.json or MOT .csv).",
                                  "IDF1, MOTA and friends (motmetrics) of predicted tracks.")
score_persons_cmd = _track_scoring(
    "persons", "Predicted tracks with their persons (a run's people.json).",
    "Ground-truth tracks: one id per person (MOT .csv, or .json), or a .json with persons.",
    "Identity purity and coverage of predicted persons (face identity across shots).")


def _json_fps(*paths: Path) -> float | None:
    from socialpipe.pipeline.contracts.artifacts import Tracks, load_json

    for path in paths:
        if Path(path).suffix.lower() == ".json":
            return load_json(Tracks, path).fps
    return None


@score.command("speech")
@click.option("--pred", type=_existing, required=True, help="Predicted transcript (.json, .rttm, .vtt or .srt).")
@click.option("--gt", type=_existing, required=True, help="Ground-truth transcript.")
@click.option("--collar", type=_SECONDS, default=0.25, show_default=True,
              help="Seconds forgiven on each side of every reference speaker boundary.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def score_speech_cmd(pred, gt, collar, as_json):
    """Diarization error rate (pyannote.metrics) and word error rate (jiwer)."""
    from socialpipe.pipeline.contracts.formats import load_transcript
    from socialpipe.pipeline.evaluation.scoring import score_speech

    scores = score_speech(load_transcript(pred), load_transcript(gt), collar)
    _emit(scores, as_json, f"speech: {pred} against {gt} (DER collar +-{collar:g} s, overlap scored)")


@score.command("link")
@click.option("--pred", type=_existing, required=True, help="Predicted links (.json).")
@click.option("--gt", type=_existing, required=True, help="Ground-truth links (.json).")
@click.option("--transcript", type=_existing, help="Ground-truth transcript, to score speech time.")
@click.option("--pred-transcript", type=_existing, help="Transcript the predicted voice labels come from.")
@click.option("--pred-tracks", type=_existing, help="Tracks the predicted links point to (maps track ids).")
@click.option("--gt-tracks", type=_existing, help="Tracks the ground-truth links point to.")
@click.option("--fps", type=_FPS, help="Frame rate for MOT csv tracks.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def score_link_cmd(pred, gt, transcript, pred_transcript, pred_tracks, gt_tracks, fps, as_json):
    """Share of voices, and of speech time, attributed to the right track."""
    from socialpipe.pipeline.contracts.formats import load_links, load_tracks, load_transcript
    from socialpipe.pipeline.evaluation.scoring import score_link

    rate = fps or _json_fps(*(p for p in (gt_tracks, pred_tracks) if p))
    scores = score_link(load_links(pred), load_links(gt), load_transcript(transcript) if transcript else None,
                        load_transcript(pred_transcript) if pred_transcript else None,
                        load_tracks(pred_tracks, rate) if pred_tracks else None,
                        load_tracks(gt_tracks, rate) if gt_tracks else None)
    _emit(scores, as_json, f"link: {pred} against {gt}")
    if not as_json:
        for voice, row in scores["voices"].items():
            click.echo(f"  {voice}: expected {row['expected']}, predicted {row['predicted']}"
                       f"{'' if row['correct'] else '  <- wrong'}")


@score.command("speakers")
@click.option("--run", "run_dir", type=_existing, required=True, help="A run folder (people, speech and link done).")
@click.option("--gt-tracks", type=_existing, required=True, help="Ground-truth tracks (.json or MOT .csv).")
@click.option("--gt-transcript", type=_existing, required=True, help="Ground-truth transcript.")
@click.option("--gt-links", type=_existing, required=True, help="Ground-truth links (.json).")
@click.option("--min-iou", type=_IOU, default=0.3, show_default=True, help="IoU with the true face a box needs.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def score_speakers_cmd(run_dir, gt_tracks, gt_transcript, gt_links, min_iou, as_json):
    """End-to-end speaker-box accuracy: at single-speaker moments (5 a second), is the run's speaker box on
    the true speaker's face?"""
    from socialpipe.pipeline.contracts.formats import load_links, load_tracks, load_transcript
    from socialpipe.pipeline.presentation.report import load_run
    from socialpipe.pipeline.evaluation.scoring import score_speakers

    run = load_run(run_dir)
    if run.tracks is None or run.transcript is None or run.links is None:
        raise InputError(f"{run_dir}: the run has no people, speech or link output; expected a run that went "
                         "through the link stage (socialpipe run VIDEO --until link)")
    truth_links = load_links(gt_links)
    scores = score_speakers(run.tracks, run.transcript, run.links, load_tracks(gt_tracks, run.video.fps),
                            load_transcript(gt_transcript), truth_links, run.video.duration_s, min_iou)
    _emit(scores, as_json, f"speakers: {run_dir} against {gt_tracks}, {gt_transcript}, {gt_links}")
    if not as_json:
        for reason, count in scores["failures"].items():
            click.echo(f"  missed: {reason:<40} {count}")


@score.command("asd")
@click.option("--pred", type=_existing, required=True,
              help="Predicted speaking scores: an AVA-ActiveSpeaker csv, or a run folder (its asd.csv).")
@click.option("--gt", type=_existing, required=True, help="Ground-truth labels, AVA-ActiveSpeaker csv.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def score_asd_cmd(pred, gt, as_json):
    """Active speaker detection mAP, as the AVA-ActiveSpeaker benchmark computes it."""
    from socialpipe.pipeline.contracts.formats import read_ava_csv
    from socialpipe.pipeline.evaluation.scoring import score_asd

    pred = Path(pred) / "asd.csv" if Path(pred).is_dir() else Path(pred)
    if not pred.is_file():
        raise InputError(f"{pred}: no such file; expected a run folder whose link stage wrote asd.csv")
    _emit(score_asd(read_ava_csv(pred), read_ava_csv(gt)), as_json, f"asd: {pred} against {gt}")


def _answer_overrides(**values) -> list[str]:
    """``--set answer.KEY=VALUE`` for each CLI shortcut given (``--model``, ``--adapter``, ``--variant``, ``--dtype``)."""
    return [f"answer.{key}={json.dumps(DTYPES.get(value, value) if key == 'dtype' else str(value))}"
            for key, value in values.items() if value is not None]


def _dataset_options(split: str, tvqa_file: str):
    """The options ``eval`` and ``finetune`` share: the dataset, where it is, and which questions."""
    options = [
        click.option("--dataset", type=DATASET_CHOICE, required=True),
        click.option("--data-root", type=_existing, required=True,
                     help="The dataset's frames, videos and subtitles."),
        click.option("--annotations", type=_existing,
                     help=f"TVQA+ question annotations. Default: DATA_ROOT/{tvqa_file}."),
        click.option("--split", default=split, show_default=True, help="MMSI / OnlineMMSI split."),
        click.option("--task", "tasks", multiple=True, type=click.Choice(["videoqa", "sti", "pcr", "mpp"]),
                     help="Only these tasks."),
    ]

    def decorate(command):
        for option in reversed(options):
            command = option(command)
        return command
    return decorate


def _annotations(dataset: str, data_root, annotations, tvqa_file: str) -> Path:
    """TVQA+ reads its annotation file (default DATA_ROOT/tvqa_file); MMSI and OnlineMMSI their data root."""
    if dataset != "tvqa+":
        return Path(data_root)
    return Path(annotations or Path(data_root) / tvqa_file)


@cli.command("eval")
@_dataset_options("test", "tvqa_plus_val.json")
@click.option("--model", help="Answer model: a hub id or a local folder.")
@click.option("--adapter", type=_existing, help="A LoRA adapter folder from socialpipe finetune, applied to --model.")
@click.option("--variant", type=VARIANT_CHOICE, help="What the model is told of who is where.")
@click.option("--config", "config_path", type=_existing, help="A YAML config (see configs/).")
@click.option("--set", "overrides", multiple=True, metavar="SECTION.KEY=VALUE", help="Override one setting.")
@click.option("--out", type=_existing, help="Results folder (resumable). Default: eval_runs/<dataset>-<variant>.")
@click.option("--limit", type=click.IntRange(min=1), help="Only the first N questions.")
@_placement_options
@click.option("--json", "as_json", is_flag=True, help="Print the summary as one JSON object.")
def evaluate_cmd(dataset, data_root, annotations, split, tasks, model, adapter, variant, config_path, overrides, out,
                 limit, workers, ray_address, threads, as_json):
    """Answer a dataset's questions and report accuracy per task (resumes an interrupted run)."""
    from socialpipe.pipeline.contracts.config import load_config
    from socialpipe.pipeline.evaluation.tasks import evaluate, summary_table

    overrides = list(overrides) + _answer_overrides(model=model, adapter=adapter, variant=variant)
    settings = load_config(config_path, overrides).answer
    annotations = _annotations(dataset, data_root, annotations, "tvqa_plus_val.json")
    out = out or Path("eval_runs") / f"{dataset}-{settings.variant}"

    with BarProgress() as progress:
        summary = evaluate(dataset, Path(annotations), Path(data_root), settings, Path(out), tuple(tasks), limit,
                           progress, split, _placement(workers, ray_address, threads))
    click.echo(json.dumps(summary, sort_keys=True) if as_json else summary_table(summary))
    if not as_json:
        click.echo(f"results: {out}/results.jsonl, summary: {out}/summary.json", err=True)


@cli.command()
@_dataset_options("train", "tvqa_plus_train.json")
@click.option("--model", help="Base answer model: a hub id or a local folder.")
@click.option("--variant", type=VARIANT_CHOICE, help="Trained as it will be evaluated: none, box, visual or align.")
@click.option("--dtype", type=click.Choice(list(DTYPES)), help="Weights' dtype: bf16 on a GPU is the usual choice.")
@click.option("--config", "config_path", type=_existing, help="A YAML config (see configs/).")
@click.option("--set", "overrides", multiple=True, metavar="SECTION.KEY=VALUE",
              help="Override one setting, e.g. --set finetune.rank=64 (see configs/default.yaml).")
@click.option("--out", type=_existing, help="Output folder (resumable). Default: finetune_runs/<dataset>-<variant>.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the first adapter.")
@click.option("--seeds", type=click.IntRange(min=1), default=1, show_default=True,
              help="Adapters to train, one per seed (seed, seed+1, ...); the paper averages 3.")
@click.option("--limit", type=click.IntRange(min=1), help="Only the first N questions.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as one JSON object.")
def finetune(dataset, data_root, annotations, split, tasks, model, variant, dtype, config_path, overrides, out, seed,
             seeds, limit, as_json):
    """Train LoRA adapters on a dataset's questions, with or without speaker attention alignment."""
    from socialpipe.pipeline.contracts.config import load_config
    from socialpipe.pipeline.evaluation.finetuning import finetune as train

    overrides = list(overrides) + _answer_overrides(model=model, variant=variant, dtype=dtype)
    config = load_config(config_path, overrides)
    annotations = _annotations(dataset, data_root, annotations, "tvqa_plus_train.json")
    out = Path(out or Path("finetune_runs") / f"{dataset}-{config.answer.variant}")
    with BarProgress() as progress:
        summary = train(dataset, Path(annotations), Path(data_root), config.answer, config.finetune, out, seed, seeds,
                        tuple(tasks), limit, split, progress)
    if as_json:
        click.echo(json.dumps(summary, sort_keys=True))
        return
    for result in summary["results"]:
        loss = "" if result["final_loss"] is None else f", last step's loss {result['final_loss']:.4f}"
        click.echo(f"seed {result['seed']}: {result['steps']} steps on {result['questions']} questions{loss}; "
                   f"adapter: {result['adapter']}")
    click.echo(f"use it with: socialpipe eval ... --model {config.answer.model} --adapter ADAPTER", err=True)


def main() -> None:
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except SocialpipeError as exc:
        click.echo(f"socialpipe: error: {exc}", err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()

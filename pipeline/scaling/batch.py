"""``socialpipe batch``: the pipeline over many videos, resumable and fault-isolated.

Each video gets its run folder under the batch folder (``DIR/<video name>``, with a short hash of its
path when two inputs share a name) and runs exactly as ``socialpipe run`` would, with the same settings,
``--until`` and ground truth found by file name in ``--tracks-dir``, ``--transcript-dir`` and
``--links-dir``. ``DIR/batch.json`` is the batch's record, written only by the driver after each video:
per video its status (``done`` or ``failed`` with its one-line error), duration, seconds per stage,
tracks, voices, linked voices, and the stages computed in its last attempt. A re-run skips finished
videos and retries failed ones; a video cut off by a kill resumes inside its run folder, whose finished
stages are kept (the run folder's own up-to-date check), so nothing is computed twice.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from functools import partial
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from socialpipe.pipeline.contracts.artifacts import read_json
from socialpipe.pipeline.contracts.config import Config
from socialpipe.pipeline.contracts.errors import InputError, SocialpipeError
from socialpipe.pipeline.evaluation.tasks import claim_folder
from socialpipe.pipeline.contracts.formats import LINK_SUFFIXES, TRACK_SUFFIXES, TRANSCRIPT_SUFFIXES
from socialpipe.pipeline.contracts.io import text_lines, write_bytes_atomic, write_text_atomic
from socialpipe.pipeline.media.models import load_counts
from socialpipe.pipeline.run.orchestrator import RunRequest, check_run_options, run
from socialpipe.pipeline.run.naming import read_gallery
from socialpipe.pipeline.run.parallel import Placement, spread, with_gpus
from socialpipe.pipeline.contracts.progress import ProgressEvent, ProgressHook, quiet, stopwatch
from socialpipe.pipeline.run.rundir import MANIFEST
from socialpipe.pipeline.run.stage_table import STAGE_NAMES

BATCH_FILE = "batch.json"
SETUP_FILE = "batch_settings.json"
VIDEO_SUFFIXES = (".mp4", ".mkv", ".mov", ".avi", ".webm", ".m4v", ".mpg", ".mpeg", ".ts", ".flv", ".wmv")
LIST_SUFFIXES = (".txt", ".list", ".lst")


# ----------------------------------------------------------------------------- inputs


def expand_inputs(inputs: Sequence[str | Path]) -> list[Path]:
    """The videos named by ``inputs``: a folder (its video files, sorted), a glob pattern (``*.mp4``,
    ``season1/**/*.mkv``), a text file of paths (one per line, relative to the file; ``#`` comments), or a
    video. Duplicates are dropped; an input that names no video is an error."""
    videos: list[Path] = []
    for given in inputs:
        path = Path(given)
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES)
            if not found:
                raise InputError(f"{path}: a folder with no video files ({', '.join(VIDEO_SUFFIXES[:5])}, ...)")
            videos += found
        elif path.is_file() and path.suffix.lower() in LIST_SUFFIXES:
            try:
                lines = text_lines(path.read_text(encoding="utf-8"))
            except UnicodeDecodeError:
                raise InputError(f"{path}: a list of videos must be UTF-8 text, one path per line") from None
            listed = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
            if not listed:
                raise InputError(f"{path}: lists no videos; expected one video path per line")
            videos += [p if p.is_absolute() else path.parent / p for p in map(Path, listed)]
        elif path.is_file():
            videos.append(path)
        elif glob.has_magic(str(given)):
            found = sorted(Path(p) for p in glob.glob(str(given), recursive=True) if Path(p).is_file())
            if not found:
                raise InputError(f"{given}: the pattern matches no file; expected videos to process")
            videos += found
        else:
            raise InputError(f"{given}: no such file or folder; expected videos, a folder, a glob or a list file")
    unique = list(dict.fromkeys(p.resolve() for p in videos))
    if not unique:
        raise InputError("no videos given; expected a folder, a glob, a list file or video files")
    return unique


def run_names(videos: Sequence[Path]) -> dict[Path, str]:
    """Each video's run folder name: its file name without the suffix, and a short hash of its full path
    when another input has the same name. The same inputs always get the same names (a re-run finds them)."""
    stems = Counter(video.stem for video in videos)
    return {video: video.stem if stems[video.stem] == 1 else
            f"{video.stem}-{hashlib.sha256(str(video).encode()).hexdigest()[:6]}" for video in videos}


def ground_truth_for(video: Path, folder: Path | None, suffixes: tuple[str, ...], what: str) -> Path | None:
    """The file in ``folder`` named after ``video`` (``<stem>.<anything><suffix>``, e.g. ``clip.json``,
    ``clip.tracks.json`` or ``clip.mot.csv`` for ``clip.mp4``), or None when no folder is given. Where one
    folder holds several kinds (``clip.tracks.json`` beside ``clip.transcript.json``), the name that says
    ``what`` decides."""
    if folder is None:
        return None
    found = sorted(p for p in folder.iterdir() if p.is_file() and p.name.startswith(video.stem + ".")
                   and p.suffix.lower() in suffixes)
    if len(found) > 1:
        found = [p for p in found if f".{what}." in p.name[len(video.stem):].lower()] or found
    if len(found) != 1:
        raise InputError(f"{folder}: {'no' if not found else f'{len(found)}'} {what} files named after {video.name} "
                         f"({video.stem}.*{'|'.join(suffixes)}); expected exactly one")
    return found[0]


# ----------------------------------------------------------------------------- one video


@dataclass(frozen=True)
class BatchSettings:
    """What every video of a batch shares."""

    config: Config = field(default_factory=Config)
    until: str = "answer"
    question: str | None = None
    options: tuple[str, ...] = ()
    tracks_dir: Path | None = None
    transcript_dir: Path | None = None
    links_dir: Path | None = None
    unlisted_off_screen: bool = False
    force: bool = False
    gallery: Path | None = None  # reference photos and voice samples naming the people of every video

    def __post_init__(self) -> None:
        check_run_options(self.until, self.question)
        if self.gallery is not None:
            read_gallery(self.gallery)  # a folder of photos or voice samples, or one line now
        for option, folder in (("tracks-dir", self.tracks_dir), ("transcript-dir", self.transcript_dir),
                               ("links-dir", self.links_dir)):
            if folder is not None and not Path(folder).is_dir():
                raise InputError(f"--{option} {folder}: no such folder; expected a folder of files named after "
                                 "the videos")

    def describe(self) -> dict[str, Any]:
        """The settings a resumed batch must share (kept in ``DIR/batch_settings.json``)."""
        return {"config": self.config.to_dict(), "until": self.until, "question": self.question,
                "options": list(self.options), "tracks_dir": _text(self.tracks_dir),
                "transcript_dir": _text(self.transcript_dir), "links_dir": _text(self.links_dir),
                "unlisted_off_screen": self.unlisted_off_screen,
                **({"gallery": _text(self.gallery)} if self.gallery is not None else {})}


def _text(path: Path | None) -> str | None:
    return None if path is None else str(Path(path).resolve())


@dataclass(frozen=True)
class VideoJob:
    video: Path
    name: str
    out: Path  # the batch folder
    return_files: bool = False  # run in a scratch folder and hand the files back (a cluster without shared disk)


class VideoWorker:
    """Runs one video per call and returns its batch record; its models stay loaded between calls."""

    def __init__(self, settings: BatchSettings):
        self.settings = settings

    def __call__(self, job: VideoJob) -> dict[str, Any]:
        elapsed = stopwatch()
        record: dict[str, Any] = {"video": str(job.video), "run": job.name, "worker": f"{os.uname().nodename}:{os.getpid()}"}
        scratch = Path(tempfile.mkdtemp(prefix="socialpipe-batch-")) if job.return_files else None
        folder = (scratch if scratch is not None else job.out) / job.name
        before: dict[str, tuple] = {}
        try:
            if scratch is not None and (job.out / job.name / MANIFEST).is_file():
                shutil.copytree(job.out / job.name, folder)  # a shared path after all: resume from it
            before = _stamps(_manifest_stages(folder))
            result = self._run(job.video, folder)
            record.update(status="done", **_counts(result), stopped_after=result.stopped_after)
        except SocialpipeError as exc:
            record.update(status="failed", error=str(exc))
        except Exception as exc:  # a bug or a library's failure on this video: recorded, the batch goes on
            record.update(status="failed", error=f"{type(exc).__name__}: {str(exc).strip()[:300]}")
        finally:
            stages = _manifest_stages(folder)
            record["computed"] = [s for s, stamp in _stamps(stages).items() if before.get(s) != stamp]
            record["stage_seconds"] = {name: entry.get("seconds") for name, entry in stages.items() if name != "video"}
            record["seconds"] = elapsed()
            record["model_loads"] = load_counts()
            record["finished_at"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
            if scratch is not None:
                record["files"] = {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*")
                                   if p.is_file() and not p.name.startswith(".")} if folder.is_dir() else {}
                shutil.rmtree(scratch, ignore_errors=True)
        return record

    def _run(self, video: Path, folder: Path):
        s = self.settings
        request = RunRequest(
            video=video, config=s.config, out=folder, question=s.question, options=s.options, until=s.until,
            tracks_file=ground_truth_for(video, s.tracks_dir, TRACK_SUFFIXES, "tracks"),
            transcript_file=ground_truth_for(video, s.transcript_dir, TRANSCRIPT_SUFFIXES, "transcript"),
            links_file=ground_truth_for(video, s.links_dir, LINK_SUFFIXES, "links"),
            unlisted_off_screen=s.unlisted_off_screen, force=s.force, gallery=s.gallery)
        return run(request)


def _manifest_stages(folder: Path) -> dict[str, dict[str, Any]]:
    """The stages a run folder's manifest records (none when it has no readable manifest yet)."""
    try:
        stages = json.loads((folder / MANIFEST).read_text(encoding="utf-8")).get("stages")
    except (OSError, ValueError, AttributeError, RecursionError):
        return {}
    return {name: entry for name, entry in stages.items() if isinstance(entry, dict)} if isinstance(stages, dict) else {}


def _stamps(stages: dict[str, dict[str, Any]]) -> dict[str, tuple]:
    """What changes when a stage is computed again."""
    return {name: (entry.get("key"), entry.get("finished_at"), entry.get("seconds")) for name, entry in stages.items()}


def _counts(result) -> dict[str, Any]:
    counts: dict[str, Any] = {"duration_s": round(result.video.duration_s, 3)}
    if result.tracks is not None:
        counts["tracks"] = len(result.tracks.track_ids)
    if result.transcript is not None:
        counts["voices"] = len(result.transcript.speakers)
    if result.links is not None:
        counts["linked_voices"] = sum(link.track_id is not None for link in result.links.links)
    if result.answer is not None:
        counts["answer"] = result.answer.text
    return counts


def _lost(job: VideoJob, reason: str) -> dict[str, Any]:
    return {"video": str(job.video), "run": job.name, "status": "failed", "error": reason, "computed": []}


# ----------------------------------------------------------------------------- the batch


def _read_batch(path: Path) -> dict[str, dict[str, Any]]:
    if not path.is_file():
        return {}
    try:
        data = read_json(path)
    except InputError:
        return {}  # a hand-damaged record: every video is looked at again (finished stages are kept)
    videos = data.get("videos") if isinstance(data, dict) else None
    return {k: v for k, v in videos.items() if isinstance(v, dict)} if isinstance(videos, dict) else {}


def run_batch(inputs: Sequence[str | Path], out: Path, settings: BatchSettings, placement: Placement = Placement(),
              return_files: bool = False, progress: ProgressHook = quiet) -> dict[str, Any]:
    """Every video of ``inputs`` through the pipeline into ``out``; returns the batch record."""
    out = Path(out)
    videos = expand_inputs(inputs)
    names = run_names(videos)
    claim_folder(out, SETUP_FILE, settings.describe(), "batch")
    placement = with_gpus(placement, settings.config.answer.device,  # answer tasks go where a GPU is
                          answering=settings.question is not None and settings.until == "answer")
    record_path = out / BATCH_FILE
    records = _read_batch(record_path)
    todo = [VideoJob(video, names[video], out, return_files) for video in videos
            if settings.force or records.get(names[video], {}).get("status") != "done"
            or not (out / names[video] / MANIFEST).is_file()]
    skipped = len(videos) - len(todo)
    progress(ProgressEvent("batch", skipped, len(videos), "video",
                           f"{len(videos)} videos: {skipped} already done, {len(todo)} to run on "
                           f"{_where(placement)}"))
    failed = 0
    elapsed = stopwatch()
    for k, (index, record) in enumerate(spread(partial(VideoWorker, settings), todo, placement, _lost), start=1):
        files = record.pop("files", None)
        if files is not None:  # handed back by a worker without the shared path
            for name, data in files.items():
                write_bytes_atomic(out / record["run"] / name, data)
        records[record["run"]] = record
        write_text_atomic(record_path, json.dumps({"videos": records, "placement": asdict(placement)}, indent=1)
                          + "\n")
        failed += record["status"] == "failed"
        verdict = "done" if record["status"] == "done" else f"failed: {record['error']}"
        progress(ProgressEvent("batch", skipped + k, len(videos), "video",
                               f"{todo[index].name}: {verdict} ({k - failed} done, {failed} failed, "
                               f"{len(todo) - k} to go)"))
    batch = {"videos": {names[v]: records[names[v]] for v in videos if names[v] in records},
             "placement": asdict(placement), "seconds": elapsed()}
    write_text_atomic(record_path, json.dumps(batch, indent=1) + "\n")
    return batch


def _where(placement: Placement) -> str:
    if placement.ray is not None:
        return f"Ray ({placement.ray}), {placement.workers} workers"
    return f"{placement.workers} worker{'s' if placement.workers > 1 else ''}, {placement.threads_per_worker} threads each"


def batch_table(batch: dict[str, Any]) -> str:
    """The batch record as a table: per video its status, duration, seconds per stage and counts."""
    stages = [s for s in STAGE_NAMES if any(s in r.get("stage_seconds", {}) for r in batch["videos"].values())]
    header = f"{'video':<28} {'status':<7} {'dur s':>6} " + " ".join(f"{s + ' s':>9}" for s in stages) + \
             f" {'tracks':>6} {'voices':>6} {'linked':>6}"
    lines = [header]
    for name, r in batch["videos"].items():
        cells = " ".join(f"{_cell(r.get('stage_seconds', {}).get(s)):>9}" for s in stages)
        lines.append(f"{name[:28]:<28} {r['status']:<7} {_cell(r.get('duration_s')):>6} {cells} "
                     f"{_cell(r.get('tracks')):>6} {_cell(r.get('voices')):>6} {_cell(r.get('linked_voices')):>6}")
    done = sum(r["status"] == "done" for r in batch["videos"].values())
    lines.append(f"{done} done, {len(batch['videos']) - done} failed, of {len(batch['videos'])} videos")
    for name, r in batch["videos"].items():
        if r["status"] == "failed":
            lines.append(f"  {name}: {r['error']}")
    return "\n".join(lines)


def _cell(value) -> str:
    if value is None:
        return "-"
    return f"{value:.1f}" if isinstance(value, float) else str(value)

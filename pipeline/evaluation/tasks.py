"""``socialpipe eval``: answer a dataset's questions with one model and variant, and score them.

Results go to ``OUT/results.jsonl`` one item per line, flushed as they come, so an interrupted
evaluation resumes where it stopped (a half-written last line is recomputed); ``OUT/eval.json``
records the settings (a resume with other settings is refused) and ``OUT/summary.json`` the
accuracy per task, the alignment diagnostics, the items that failed and the annotation rows that
could not be read.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict
from functools import partial
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from socialpipe.pipeline.contracts.artifacts import Transcript
from socialpipe.pipeline.contracts.boxes import Boxes
from socialpipe.pipeline.contracts.config import AnswerConfig
from socialpipe.pipeline.evaluation.datasets import (
    EvalItem,
    load_dataset,
    load_keypoints,
    tvqa_frame_path,
    tvqa_subtitles_path,
    TVQA_FPS,
)
from socialpipe.pipeline.contracts.errors import InputError
from socialpipe.pipeline.contracts.formats import read_srt
from socialpipe.pipeline.contracts.io import write_text_atomic
from socialpipe.pipeline.run.parallel import Placement, spread, with_gpus
from socialpipe.pipeline.contracts.progress import ProgressEvent, ProgressHook, quiet, stopwatch
from socialpipe.pipeline.contracts.timebase import duration_of, frame_to_time, frames_in

UNNAMED_SPEAKER = "Someone"  # who speaks a subtitle line that names nobody
GROUP_SIZE = 8  # questions per task when they are spread over workers (at most)
NEAREST_BOX_FRAMES = 3  # a frame without box annotations borrows those of an annotated frame this close


def tvqa_scene(item: EvalItem, root: Path, num_frames: int):
    """Frames (3 fps files), subtitle lines and character boxes of a TVQA+ question's window."""
    from socialpipe.stages.answer import Scene, transcript_lines

    folder = tvqa_frame_path(root, item.clip, 1).parent
    available = sorted(int(p.stem) for p in folder.glob("*.jpg")) if folder.is_dir() else []
    if not available:
        raise InputError(f"no frames for {item.clip} in {folder}")
    start, end = item.window_s
    inside = [n for n in available if start <= frame_to_time(n - 1, TVQA_FPS) <= end] or available
    picks = [inside[int(i)] for i in np.linspace(0, len(inside) - 1, num_frames).round().astype(int)]
    frames = []
    for n in picks:
        image = cv2.imread(str(tvqa_frame_path(root, item.clip, n)))
        if image is None:
            raise InputError(f"cannot read frame {tvqa_frame_path(root, item.clip, n)}")
        frames.append(cv2.cvtColor(image, cv2.COLOR_BGR2RGB))
    times = [frame_to_time(n - 1, TVQA_FPS) for n in picks]
    subtitles = tvqa_subtitles_path(root, item.clip)
    transcript = read_srt(subtitles, unnamed=UNNAMED_SPEAKER) if subtitles.is_file() else Transcript()
    lines, speakers, covered = transcript_lines(transcript, start, end, times)
    names = {s.lower(): s for s in speakers}
    boxes = {}
    annotated = sorted(set(item.boxes.frame_index.tolist())) if len(item.boxes) else []
    for t, n in enumerate(picks):
        nearest = min(annotated, key=lambda a: abs(a - n), default=None)
        if nearest is None or abs(nearest - n) > NEAREST_BOX_FRAMES:
            continue
        for i in np.flatnonzero(item.boxes.frame_index == nearest):
            label = str(item.boxes.label[i])
            if label.lower() in names:
                boxes[names[label.lower()], t] = item.boxes.xyxy[i]
    return Scene(frames, times, lines, speakers, covered, Boxes.from_labelled(boxes))


KEYPOINT_FPS = 5.0  # MMSI keypoints are sampled at 5 per second
MMSI_LINE_S = 3.0  # MMSI lines carry a start second only; each is taken to last this long


def video_scene(item: EvalItem, root: Path, num_frames: int):
    """Frames from the item's video (MMSI, OnlineMMSI), its context lines, and MMSI's keypoint boxes."""
    from socialpipe.stages.answer import frames_covered
    from socialpipe.pipeline.media.video import probe, read_uniform_frames
    from socialpipe.stages.answer import Scene, prompt_line

    path = root / item.video
    if not path.is_file():
        raise InputError(f"no video for {item.clip} at {path}")
    video = probe(path)
    start, end = item.window_s
    end = min(end, video.duration_s)
    start = min(start, max(end - duration_of(1, video.fps), 0.0))
    frames, _, times = read_uniform_frames(video, num_frames, start, end)
    lines, speakers, covered = [], [], []
    for speaker, time_s, text in item.context:
        lines.append(prompt_line(speaker, time_s, time_s + MMSI_LINE_S, text))
        speakers.append(speaker)
        covered.append(frames_covered(time_s, time_s + MMSI_LINE_S, times))
    boxes = {}
    if item.keypoints:
        steps = load_keypoints(root / item.keypoints)
        for t, time_s in enumerate(times):
            step = min(frames_in(time_s, KEYPOINT_FPS), len(steps) - 1)
            for person in steps[step] if len(steps) else ():
                points = np.asarray(person["keypoints"], float).reshape(-1, 3)
                seen = points[points[:, 2] > 0, :2]
                if len(seen):
                    x1, y1 = seen.min(axis=0)
                    x2, y2 = seen.max(axis=0)
                    boxes[f"Player{int(person['idx'])}", t] = [max(x1, 0.0), max(y1, 0.0), min(x2, video.width),
                                                              min(y2, video.height)]
    return Scene(list(frames), list(times), lines, speakers, covered, Boxes.from_labelled(boxes))


def scene_for(item: EvalItem, root: Path, num_frames: int):
    return tvqa_scene(item, root, num_frames) if item.dataset == "tvqa+" else video_scene(item, root, num_frames)


def _read_results(path: Path) -> list[dict[str, Any]]:
    """The finished items of an earlier run. A line that is not a JSON object with an ``item_id`` (an
    interrupted write, a hand edit) is dropped alone, and its item is done again."""
    if not path.is_file():
        return []
    results = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and isinstance(record.get("item_id"), str):
            results.append(record)
    return results


class QuestionWorker:
    """Answers groups of questions; the answer model is loaded on its first question and kept."""

    def __init__(self, settings: AnswerConfig, data_root: Path):
        self.settings, self.data_root, self.stage = settings, data_root, None

    def __call__(self, items: list[EvalItem]) -> list[dict[str, Any]]:
        from socialpipe.stages.answer import AnswerStage, load_model

        if self.stage is None:
            self.stage = AnswerStage(self.settings, loaded=load_model(self.settings))
        return [self._answer(item) for item in items]

    def _answer(self, item: EvalItem) -> dict[str, Any]:
        elapsed = stopwatch()
        record: dict[str, Any] = {"item_id": item.item_id, "task": item.task, "answer_index": item.answer_index}
        try:
            scene = scene_for(item, self.data_root, self.settings.num_frames)
            answer = self.stage.answer(scene, item.question, item.options)
            record.update(chosen=answer.chosen_option, correct=answer.chosen_option == item.answer_index,
                          option_scores=list(answer.option_scores or ()),
                          diagnostics={k: v for k, v in answer.diagnostics.items()
                                       if k.startswith(("attn_", "active_head", "aligned_"))})
        except InputError as exc:
            record.update(error=str(exc), correct=False)
        record["seconds"] = elapsed()
        return record


def _lost_group(items: list[EvalItem], reason: str) -> list[dict[str, Any]]:
    return []  # not recorded: a resumed evaluation answers these questions again


def evaluate(dataset: str, annotations: Path, data_root: Path, settings: AnswerConfig, out: Path,
             tasks: tuple[str, ...] = (), limit: int | None = None,
             progress: ProgressHook = quiet, split: str = "test", placement: Placement = Placement()) -> dict[str, Any]:
    """Answer every item (or the first ``limit`` of the chosen tasks), resuming from ``out``; return the summary.
    ``annotations`` is TVQA+'s annotation file, or the data root for MMSI and OnlineMMSI.

    The questions go to ``placement``'s workers in groups (one task per group on Ray, with a GPU each when
    ``answer.device`` is cuda); ``results.jsonl`` is written here only, one line per question as its group
    comes back, so it stays the single record an interrupted evaluation resumes from."""
    loaded_dataset = load_dataset(dataset, annotations, split)
    items = [item for item in loaded_dataset.items if not tasks or item.task in tasks][:limit]
    setup = {"dataset": dataset, "split": split, "annotations": str(annotations), "data_root": str(data_root),
             "answer": asdict(settings), "tasks": list(tasks)}
    setup["answer"]["layer_range"] = list(settings.layer_range)
    claim_folder(out, "eval.json", setup, "evaluation")
    results_path = out / "results.jsonl"
    done = {r["item_id"]: r for r in _read_results(results_path)}
    write_text_atomic(results_path, "".join(json.dumps(r) + "\n" for r in done.values()))
    pending = [item for item in items if item.item_id not in done]
    placement = with_gpus(placement, settings.device)
    size = 1 if placement.workers == 1 and placement.ray is None else \
        max(1, min(GROUP_SIZE, math.ceil(len(pending) / (4 * placement.workers))))
    groups = [pending[k:k + size] for k in range(0, len(pending), size)]
    answered = len(items) - len(pending)
    with open(results_path, "a", encoding="utf-8") as sink:
        for _, records in spread(partial(QuestionWorker, settings, data_root), groups, placement, _lost_group):
            for record in records:
                sink.write(json.dumps(record) + "\n")
                sink.flush()
                done[record["item_id"]] = record
                answered += 1
                verdict = "error: " + record["error"] if "error" in record else \
                    ("right" if record["correct"] else "wrong")
                progress(ProgressEvent("eval", answered, len(items), "question",
                                       f"{answered}/{len(items)} {record['item_id']}: {verdict}"))
    summary = summarise([done[i.item_id] for i in items if i.item_id in done], loaded_dataset.rejected, setup)
    write_text_atomic(out / "summary.json", json.dumps(summary, indent=1) + "\n")
    return summary


def claim_folder(out: Path, setup_name: str, setup: dict[str, Any], what: str) -> None:
    """Make ``out`` the folder of one resumable job (an evaluation, a fine-tuning) whose settings
    ``setup`` are kept in ``out/setup_name``: a new or empty folder, or one of the same job with the same
    settings (a resume). Anything else is refused before a file is written."""
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out}: is a file; expected a folder for the {what}'s results")
    setup_path = out / setup_name
    if out.is_dir() and any(out.iterdir()) and not setup_path.is_file():
        raise InputError(f"--out {out}: is a non-empty folder that holds no {what} (no {setup_name}); expected a new "
                         f"or empty folder, or an earlier {what}'s folder to resume")
    if setup_path.is_file() and _read_setup(setup_path, what) != setup:
        raise InputError(f"--out {out}: holds {'an' if what[0] in 'aeiou' else 'a'} {what} with other settings "
                         f"({setup_path}); "
                         "expected a new folder, or the same settings to resume")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"--out {out}: cannot make the folder ({exc.strerror}); expected a writable place") from None
    write_text_atomic(setup_path, json.dumps(setup, indent=1) + "\n")


def _read_setup(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise InputError(f"{path}: unreadable {what} settings; expected the {path.name} socialpipe wrote "
                         "(choose a new --out folder)") from None


def summarise(results: list[dict[str, Any]], rejected: list[dict[str, Any]], setup: dict[str, Any]) -> dict[str, Any]:
    tasks: dict[str, dict[str, Any]] = {}
    for r in results:
        row = tasks.setdefault(r["task"], {"items": 0, "correct": 0, "failed": 0})
        row["items"] += 1
        row["correct"] += bool(r.get("correct"))
        row["failed"] += "error" in r
    for row in tasks.values():
        row["accuracy"] = row["correct"] / row["items"] if row["items"] else None
    diagnostics = {}
    for name in ("attn_max_before", "attn_max_after", "attn_mean_before", "attn_mean_after"):
        values = [r["diagnostics"][name] for r in results if name in r.get("diagnostics", {})
                  and r["diagnostics"][name] == r["diagnostics"][name]]
        if values:
            diagnostics[name] = float(np.mean(values))
    return {"dataset": setup["dataset"], "model": setup["answer"]["model"], "variant": setup["answer"]["variant"],
            "tasks": tasks, "diagnostics": diagnostics, "failed_items": [
                {"item_id": r["item_id"], "error": r["error"]} for r in results if "error" in r],
            "rejected_rows": len(rejected), "rejections": rejected[:100]}


def summary_table(summary: dict[str, Any]) -> str:
    lines = [f"{summary['dataset']} / {summary['model']} / variant {summary['variant']}",
             f"{'task':<10} {'items':>6} {'correct':>8} {'failed':>7} {'accuracy':>9}"]
    for task, row in summary["tasks"].items():
        accuracy = "-" if row["accuracy"] is None else f"{100 * row['accuracy']:.1f}%"
        lines.append(f"{task:<10} {row['items']:>6} {row['correct']:>8} {row['failed']:>7} {accuracy:>9}")
    if summary["diagnostics"]:
        d = summary["diagnostics"]
        lines.append(f"AttnMax {d.get('attn_max_before', float('nan')):.4g} -> {d.get('attn_max_after', float('nan')):.4g}, "
                     f"AttnMean {d.get('attn_mean_before', float('nan')):.4g} -> {d.get('attn_mean_after', float('nan')):.4g}")
    lines.append(f"annotation rows that could not be read: {summary['rejected_rows']}")
    return "\n".join(lines)

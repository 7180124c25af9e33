"""Dataset annotations for evaluation (../shared/METHOD.md section 4), read into one item type.

TVQA+ (multiple choice over a clip with subtitles and character boxes):
- annotations: a JSON list of ``{qid, q, a0..a4, answer_idx, ts: [start_s, end_s], vid_name, bbox}``,
  ``bbox`` mapping a frame number (1-based, 3 fps) to ``[{img_id, top, left, width, height, label}]``
  in 640x360 frames;
- the data root holds the frames as ``frames_hq/<show>_frames/<vid_name>/<img_id:05d>.jpg`` (3 fps,
  TVQA's release layout; ``bbt`` for The Big Bang Theory) and subtitles as
  ``tvqa_subtitles/<vid_name>.srt`` whose lines begin ``(Name:)``.

A row that cannot be read becomes a rejection with its reason, counted and reported, never
dropped silently. MMSI and OnlineMMSI loaders are not written yet.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.errors import InputError

DATASETS = ("tvqa+", "mmsi", "onlinemmsi")
TVQA_FPS = 3.0
TVQA_SIZE = (640, 360)


@dataclass(frozen=True)
class EvalItem:
    """One question of a dataset, with what is needed to show the model its clip."""

    dataset: str
    task: str  # videoqa (TVQA+), sti, pcr or mpp (MMSI, OnlineMMSI)
    item_id: str
    question: str
    options: tuple[str, ...]
    answer_index: int
    clip: str  # the dataset's clip name (TVQA+: vid_name)
    window_s: tuple[float, float]  # the part of the clip the question is about
    boxes: Mapping[int, tuple[tuple[str, tuple[float, float, float, float]], ...]] = field(default_factory=dict)
    # TVQA+: frame number (1-based, 3 fps) -> ((label, (x1, y1, x2, y2)), ...)


@dataclass
class LoadedDataset:
    items: list[EvalItem]
    rejected: list[dict[str, Any]]  # {"row": index, "id": ..., "reason": ...}


def load_dataset(name: str, annotations: str | Path) -> LoadedDataset:
    if name == "tvqa+":
        return load_tvqa_plus(annotations)
    if name in DATASETS:
        raise InputError(f"--dataset {name}: its loader is not built yet; this version reads tvqa+")
    raise InputError(f"--dataset {name!r}: unknown; expected one of {list(DATASETS)}")


def load_tvqa_plus(path: str | Path) -> LoadedDataset:
    path = Path(path)
    try:
        rows = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{path}: no such file; expected TVQA+ annotations (tvqa_plus_val.json)") from None
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(rows, list):
        raise InputError(f"{path}: expected a JSON list of TVQA+ questions, found {type(rows).__name__}")
    items, rejected = [], []
    for index, row in enumerate(rows):
        try:
            items.append(_tvqa_item(row))
        except (KeyError, TypeError, ValueError) as exc:
            reason = f"missing field {exc.args[0]!r}" if isinstance(exc, KeyError) else str(exc)
            rejected.append({"row": index, "id": row.get("qid") if isinstance(row, dict) else None, "reason": reason})
    return LoadedDataset(items, rejected)


def _tvqa_item(row: Mapping[str, Any]) -> EvalItem:
    options = tuple(str(row[f"a{i}"]).strip() for i in range(5))
    if not all(options):
        raise ValueError("an empty answer option")
    answer = int(row["answer_idx"])
    if not 0 <= answer < 5:
        raise ValueError(f"answer_idx {answer} is not 0-4")
    start, end = (float(v) for v in row["ts"])
    if not 0 <= start <= end:
        raise ValueError(f"ts {row['ts']} is not a window [start, end] with 0 <= start <= end")
    width, height = TVQA_SIZE
    boxes = {}
    for frame, frame_boxes in row["bbox"].items():
        placed = []
        for box in frame_boxes:
            x1, y1 = float(box["left"]), float(box["top"])
            x2, y2 = x1 + float(box["width"]), y1 + float(box["height"])
            if x2 <= x1 or y2 <= y1:
                raise ValueError(f"box {box} has no area")
            placed.append((str(box["label"]), (max(x1, 0.0), max(y1, 0.0), min(x2, width), min(y2, height))))
        boxes[int(frame)] = tuple(placed)
    question = str(row["q"]).strip()
    if not question:
        raise ValueError("an empty question")
    return EvalItem("tvqa+", "videoqa", str(row["qid"]), question, options, answer, str(row["vid_name"]),
                    (start, end), boxes)


def tvqa_show(vid_name: str) -> str:
    """The show folder of a TVQA clip: ``bbt`` for The Big Bang Theory's ``s01e02_...``, else its prefix."""
    return "bbt" if vid_name[:1] == "s" and vid_name[1:3].isdigit() else vid_name.split("_")[0]


def tvqa_frame_path(root: Path, vid_name: str, frame: int) -> Path:
    return root / "frames_hq" / f"{tvqa_show(vid_name)}_frames" / vid_name / f"{frame:05d}.jpg"


def tvqa_subtitles_path(root: Path, vid_name: str) -> Path:
    return root / "tvqa_subtitles" / f"{vid_name}.srt"

"""Dataset annotations for evaluation (docs/method.md, section 4), read into one item type.

TVQA+ (multiple choice over a clip with subtitles and character boxes):
- annotations: a JSON list of ``{qid, q, a0..a4, answer_idx, ts: [start_s, end_s], vid_name, bbox}``,
  ``bbox`` mapping a frame number (1-based, 3 fps) to ``[{img_id, top, left, width, height, label}]``
  in 640x360 frames;
- the data root holds the frames as ``frames_hq/<show>_frames/<vid_name>/<img_id:05d>.jpg`` (3 fps,
  TVQA's release layout; ``bbt`` for The Big Bang Theory) and subtitles as
  ``tvqa_subtitles/<vid_name>.srt`` whose lines begin ``(Name:)``.

MMSI (speaking target identification ``sti``, pronoun coreference ``pcr``, mentioned player
prediction ``mpp``), in the layout of its public release, under one root:
- ``split.json``: ``{"train": [...], "test": [...]}`` lists of ``<game>_<round>`` names;
- ``txt/<name>.txt``: one utterance a line, ``[Player3] (MM:SS): text`` with ``[PlayerK]`` mentions;
- ``txt_labeled/<name>.txt``: the same lines, word for word, with each resolved pronoun replaced by
  its ``PlayerK`` and, for a line addressed to one player, ``[PlayerK]`` at its end;
- ``meta/<game>.json``: ``{round: {"playerNames": [...]}}``;
- ``keypoints/<name>.npy``: per time step at 5 fps, a list of ``{"idx": player, "keypoints":
  [x, y, confidence] * 17}`` (boxes are the extents of the confident keypoints). The release
  stores these as pickled Python objects, which socialpipe never loads (unpickling runs code);
  it reads ``keypoints/<name>.json`` with the same content instead, made once with
  :data:`KEYPOINTS_CONVERSION`, and refuses a pickled ``.npy`` with that command;
- ``videos/<name>.mp4``: the round's video (frames for the model).
Questions: ``sti`` asks whom a player's line with "you"/"your" addresses (lines labelled with
exactly one addressee, once per line); ``pcr`` masks a third-person pronoun labelled with a
player; ``mpp`` masks a ``[PlayerK]`` mention. The options are the round's players.

OnlineMMSI: per task a folder (``STI``, ``PCR``, ``MPP``, any case) with ``train`` / ``test``
folders of ``*.mp4`` and a ``metadata.csv`` with columns ``video_name``, ``user`` (the dialogue
history and question) and ``assistant`` (the gold ``PlayerN`` first). The options are the players
the dialogue names. It carries no boxes.

A row that cannot be read becomes a rejection with its reason, counted and reported, never
dropped silently.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from socialpipe.pipeline.contracts.artifacts import read_json
from socialpipe.pipeline.contracts.boxes import Boxes
from socialpipe.pipeline.contracts.errors import InputError
from socialpipe.pipeline.contracts.io import text_lines

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
    boxes: Boxes = field(default_factory=Boxes.empty)  # TVQA+: character (label) boxes per frame number (1-based, 3 fps)
    context: tuple[tuple[str, float, str], ...] = ()  # MMSI: (speaker, time_s, text) lines around the question
    video: str | None = None  # the clip's video, relative to the data root (MMSI, OnlineMMSI)
    keypoints: str | None = None  # MMSI: the round's keypoint file, relative to the data root


@dataclass
class LoadedDataset:
    items: list[EvalItem]
    rejected: list[dict[str, Any]]  # {"row": index, "id": ..., "reason": ...}


def load_dataset(name: str, annotations: str | Path, split: str = "test") -> LoadedDataset:
    """TVQA+ reads its annotation file; MMSI and OnlineMMSI read their data root."""
    if name == "tvqa+":
        return load_tvqa_plus(annotations)
    if name == "mmsi":
        return load_mmsi(annotations, split)
    if name == "onlinemmsi":
        return load_onlinemmsi(annotations, split)
    raise InputError(f"--dataset {name!r}: unknown; expected one of {list(DATASETS)}")


def plain_name(value: str, what: str) -> str:
    """A file or folder name from a dataset, used to build a path under its data root: one path component, never
    ``..`` or absolute, so that no row can reach a file outside the root (a ValueError otherwise: a rejected row)."""
    if not value or value in (".", "..") or "/" in value or "\\" in value or "\0" in value:
        raise ValueError(f"{what} {value[:60]!r} is not a plain name (it would leave the data root)")
    return value


def _data_root(root: str | Path, expected: str) -> Path:
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"{root}: {'is a file' if root.exists() else 'no such folder'}; expected {expected}")
    return root


def load_tvqa_plus(path: str | Path) -> LoadedDataset:
    path = Path(path)
    rows = read_json(path)
    if not isinstance(rows, list):
        raise InputError(f"{path}: expected a JSON list of TVQA+ questions, found {type(rows).__name__}")
    items, rejected = [], []
    for index, row in enumerate(rows):
        try:
            items.append(_tvqa_item(row))
        except (KeyError, TypeError, ValueError, AttributeError, OverflowError) as exc:
            reason = f"missing field {exc.args[0]!r}" if isinstance(exc, KeyError) else str(exc)
            rejected.append({"row": index, "id": row.get("qid") if isinstance(row, dict) else None, "reason": reason})
    return LoadedDataset(items, rejected)


def _tvqa_item(row: Mapping[str, Any]) -> EvalItem:
    plain_name(str(row["vid_name"]), "vid_name")
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
    if not isinstance(row["bbox"], Mapping):
        raise ValueError(f"bbox is {type(row['bbox']).__name__}; expected {{frame: [boxes]}}")
    corners, frames, labels = [], [], []
    for frame, frame_boxes in row["bbox"].items():
        for box in frame_boxes:
            x1, y1 = float(box["left"]), float(box["top"])
            x2, y2 = x1 + float(box["width"]), y1 + float(box["height"])
            if x2 <= x1 or y2 <= y1:
                raise ValueError(f"box {box} has no area")
            corners.append((max(x1, 0.0), max(y1, 0.0), min(x2, width), min(y2, height)))
            frames.append(int(frame))
            labels.append(str(box["label"]))
    boxes = Boxes(np.array(corners, np.float64).reshape(-1, 4), np.ones(len(corners)), frame_index=np.array(frames),
                  label=np.array(labels, object))
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


# ----------------------------------------------------------------------------- MMSI

KEYPOINTS_CONVERSION = (
    "python -c \"import json, sys, numpy as np; steps = np.load(sys.argv[1], allow_pickle=True); "
    "json.dump([[{'idx': int(p['idx']), 'keypoints': np.asarray(p['keypoints'], float).ravel().tolist()} "
    "for p in step] for step in steps], open(sys.argv[1][:-4] + '.json', 'w'))\" FILE.npy")


def load_keypoints(path: str | Path) -> list[list[dict[str, Any]]]:
    """MMSI keypoints: per time step, ``[{"idx": player, "keypoints": [x, y, confidence] * 17}]``, from the
    ``.json`` beside ``path``; a pickled ``.npy`` is refused, never loaded."""
    path = Path(path)
    converted = path.with_suffix(".json")
    if not converted.is_file():
        if path.is_file():
            try:
                np.load(path, allow_pickle=False)
            except ValueError:
                raise InputError(f"{path}: holds pickled Python objects, which socialpipe never loads (unpickling can "
                                 f"run code); convert it once, with code you trust, to {converted.name}: "
                                 f"{KEYPOINTS_CONVERSION}") from None
            raise InputError(f"{path}: a plain array, not MMSI's per-step player lists; expected {converted.name} "
                             "made by the conversion in the README")
        raise InputError(f"{converted}: no such file; expected MMSI keypoints converted to JSON")
    steps = read_json(converted)
    expected = '[[{"idx": player, "keypoints": [x, y, confidence] * 17}, ...] per 5 fps step]'
    if not isinstance(steps, list) or not all(isinstance(step, list) for step in steps):
        raise InputError(f"{converted}: expected {expected}")
    for t, step in enumerate(steps):
        for person in step:
            points = person.get("keypoints") if isinstance(person, dict) else None
            idx = person.get("idx") if isinstance(person, dict) else None
            if (not isinstance(idx, int) or isinstance(idx, bool) or not isinstance(points, list)
                    or len(points) % 3 or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                                  for v in points)):
                raise InputError(f"{converted}: step {t} holds {str(person)[:60]}; expected {expected}")
    return steps


_MMSI_LINE = re.compile(r"^(?P<speaker>\[Player\d+\]|[^(]+?)\s*\((?P<m>\d+):(?P<s>\d{2})\):\s*(?P<text>.*)$")
_PLAYER = re.compile(r"Player(\d+)")
SECOND_PERSON = {"you", "your"}
THIRD_PERSON = {"he", "his", "him", "she", "her"}
MMSI_CONTEXT = 5  # utterances shown before and after the question's line
MMSI_TASKS = ("sti", "pcr", "mpp")


def _bare(word: str) -> str:
    return re.sub(r"[^\w]", "", word.lower())


def load_mmsi(root: str | Path, split: str = "test") -> LoadedDataset:
    root = _data_root(root, "an MMSI data root (split.json, txt/, txt_labeled/, meta/, keypoints/, videos/)")
    if not (root / "split.json").is_file():
        raise InputError(f"{root / 'split.json'}: no such file; expected an MMSI data root")
    splits = read_json(root / "split.json")
    names = splits.get(split) if isinstance(splits, dict) else None
    if not isinstance(names, list):
        raise InputError(f"{root / 'split.json'}: expected {{\"train\": [...], \"test\": [...]}} with a {split!r} list")
    items, rejected = [], []
    for name in names:
        try:
            items += _mmsi_round(root, str(name))
        except (OSError, KeyError, TypeError, ValueError, AttributeError) as exc:
            reason = f"missing {exc.args[0]!r}" if isinstance(exc, KeyError) else str(exc)
            rejected.append({"row": name, "id": name, "reason": reason})
    return LoadedDataset(items, rejected)


def _mmsi_round(root: Path, name: str) -> list[EvalItem]:
    game, _, round_id = plain_name(name, "round").partition("_")
    lines = [line for line in text_lines((root / "txt" / f"{name}.txt").read_text(encoding="utf-8")) if line.strip()]
    labeled = [line for line in text_lines((root / "txt_labeled" / f"{name}.txt").read_text(encoding="utf-8"))
               if line.strip()]
    if len(lines) != len(labeled):
        raise ValueError(f"{len(lines)} transcript lines but {len(labeled)} labelled lines")
    players = len(read_json(root / "meta" / f"{game}.json")[round_id]["playerNames"])
    parsed = []
    for number, line in enumerate(lines, start=1):
        match = _MMSI_LINE.match(line)
        if not match:
            raise ValueError(f"line {number} {line[:40]!r} is not '[PlayerK] (MM:SS): text'")
        parsed.append((match["speaker"].strip("[] "), int(match["m"]) * 60 + int(match["s"]), match["text"]))
    options = tuple(f"Player{k}" for k in range(players))
    items = []
    for i, (line, label_line) in enumerate(zip(lines, labeled)):
        speaker, time_s, _ = parsed[i]
        if not _PLAYER.fullmatch(speaker):
            continue
        words, label_words = line.split(), label_line.split()
        addressed = False
        for w, word in enumerate(words[1:], start=1):
            found = _mmsi_question(word, w, label_words, label_line, players, addressed)
            if found is None:
                continue
            task, answer, masked_word = found
            addressed = addressed or task == "sti"
            shown = words.copy()
            if masked_word:
                shown[w] = re.sub(r"\[?Player\d+\]?" if task == "mpp" else re.escape(word), "[MASK]", word)
            said = _MMSI_LINE.match(" ".join(shown))["text"]
            question = {
                "sti": f'Whom is {speaker} speaking to when saying: "{said}"?',
                "pcr": f'{speaker} says: "{said}". Who is [MASK]?',
                "mpp": f'{speaker} says: "{said}". Which player is [MASK]?',
            }[task]
            first, last = max(i - MMSI_CONTEXT, 0), min(i + MMSI_CONTEXT + 1, len(lines))
            context = tuple((parsed[j][0], float(parsed[j][1]), said if j == i else parsed[j][2])
                            for j in range(first, last))
            items.append(EvalItem("mmsi", task, f"{name}:{i}:{w}:{task}", question, options, answer, name,
                                  (max(time_s - 2.0, 0.0), time_s + 2.0), context=context,
                                  video=f"videos/{name}.mp4", keypoints=f"keypoints/{name}.npy"))
    return items


def _mmsi_question(word: str, w: int, label_words: list[str], label_line: str, players: int, addressed: bool):
    """(task, answer player, whether the word is masked) when this word makes a question, else None."""
    bare = _bare(word)
    if bare in SECOND_PERSON and not addressed and label_line.rstrip().endswith("]"):
        last = re.findall(r"\[(.*?)\]", label_line)[-1]
        named = [int(k) for k in _PLAYER.findall(last) if int(k) < players]
        if len(named) == 1:
            return "sti", named[0], False
    if bare in THIRD_PERSON and w < len(label_words):
        named = _PLAYER.search(label_words[w])
        if named and int(named.group(1)) < players:
            return "pcr", int(named.group(1)), True
    if word.startswith("[Player"):
        named = _PLAYER.search(word)
        if named and int(named.group(1)) < players:
            return "mpp", int(named.group(1)), True
    return None


# ----------------------------------------------------------------------------- OnlineMMSI


def load_onlinemmsi(root: str | Path, split: str = "test") -> LoadedDataset:
    root = _data_root(root, "an OnlineMMSI data root (STI/, PCR/, MPP/ with train/ and test/)")
    folders = {p.name.lower(): p for p in root.iterdir() if p.is_dir()}
    if not any(task in folders for task in MMSI_TASKS):
        raise InputError(f"{root}: no STI, PCR or MPP folder; expected an OnlineMMSI data root")
    items, rejected = [], []
    for task in MMSI_TASKS:
        if task not in folders:
            continue
        metadata = folders[task] / split / "metadata.csv"
        if not metadata.is_file():
            rejected.append({"row": str(metadata), "id": None, "reason": "no metadata.csv"})
            continue
        try:
            text = metadata.read_text(encoding="utf-8-sig")
        except UnicodeDecodeError:
            rejected.append({"row": str(metadata), "id": None, "reason": "not UTF-8 text"})
            continue
        for number, row in enumerate(csv.DictReader(io.StringIO(text, newline="")), start=2):
            try:
                items.append(_onlinemmsi_item(root, folders[task].name, split, task, row))
            except (KeyError, ValueError, AttributeError) as exc:
                reason = f"missing column {exc.args[0]!r}" if isinstance(exc, KeyError) else str(exc)
                rejected.append({"row": f"{metadata}:{number}", "id": row.get("video_name"), "reason": reason})
    return LoadedDataset(items, rejected)


def _onlinemmsi_item(root: Path, folder: str, split: str, task: str, row: Mapping[str, str]) -> EvalItem:
    video_name, dialogue, gold_text = row["video_name"].strip(), row["user"].strip(), row["assistant"].strip()
    plain_name(video_name, "video_name")
    gold = _PLAYER.search(gold_text)
    if not video_name or not dialogue:
        raise ValueError("an empty video_name or user field")
    if gold is None or not gold_text.lstrip().startswith(gold.group(0)):
        raise ValueError(f"assistant {gold_text[:30]!r} does not begin with the gold PlayerN")
    players = sorted({int(k) for k in _PLAYER.findall(dialogue)} | {int(gold.group(1))})
    options = tuple(f"Player{k}" for k in players)
    video = f"{folder}/{split}/{video_name if video_name.endswith('.mp4') else video_name + '.mp4'}"
    return EvalItem("onlinemmsi", task, f"{task}:{video_name}", dialogue, options,
                    options.index(gold.group(0)), video_name, (0.0, float("inf")), video=video)

"""Synthetic talking heads for link-stage tests: real face pixels, mouths that open on a schedule,
and the tracks and transcript that go with them."""

from __future__ import annotations

import importlib.util
import sys
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from socialpipe.pipeline.contracts.artifacts import Tracks, Transcript, Utterance
from tests.conftest import REPO, video_from_frames

_spec = importlib.util.spec_from_file_location("make_sample", REPO / "sample_videos" / "make_sample.py")
make_sample = sys.modules.setdefault("make_sample", importlib.util.module_from_spec(_spec))
_spec.loader.exec_module(make_sample)


@dataclass
class Head:
    name: str
    x: int  # left edge of the portrait
    speaks: list[tuple[float, float]]  # (start_s, end_s) spans of speech
    visible: tuple[float, float] = (0.0, 1e9)  # on screen during this span
    tint: tuple[float, float, float] = (1.0, 1.0, 1.0)


def talking_heads(path: Path, heads: list[Head], seconds: float, fps: float = 12.5,
                  size: tuple[int, int] = (640, 360), off_screen: list[tuple[str, float, float]] = ()):
    """Render the scene to ``path``; return (video path, Tracks, Transcript)."""
    from skimage import data

    source = data.astronaut()
    frames, rows = [], []
    count = int(round(seconds * fps))
    people = [make_sample.Person(h.name, i + 1, "", 0, 0, h.x, 70, 0.6, False, h.tint, 0.0) for i, h in enumerate(heads)]
    cards = [make_sample.portrait(p, source) for p in people]
    for f in range(count):
        t = f / fps
        frame = np.full((size[1], size[0], 3), 170, np.uint8)
        for head, person, card in zip(heads, people, cards):
            if not head.visible[0] <= t < head.visible[1]:
                continue
            h, w = card.shape[:2]
            frame[70:70 + h, head.x:head.x + w] = card
            marks = make_sample.to_frame(person, make_sample.SOURCE_LANDMARKS, (head.x, 70))
            talking = any(s <= t < e for s, e in head.speaks)
            opening = 0.5 + 0.5 * np.sin(2 * np.pi * 4 * t) if talking else 0.0  # about four syllables a second
            if opening > 0.1:
                centre = (marks[3] + marks[4]) / 2
                half_w = np.linalg.norm(marks[4] - marks[3]) * 0.32
                cv2.ellipse(frame, (int(centre[0]), int(centre[1] + 1)), (int(half_w), int(half_w * 0.6 * opening) + 1),
                            0, 0, 360, (70, 18, 28), -1)
            corners = make_sample.to_frame(person, make_sample.SOURCE_FACE_XYXY.reshape(2, 2), (head.x, 70))
            rows.append({"track_id": person.track_id, "frame_index": f, "xyxy": corners.reshape(4).tolist(),
                         "landmarks": marks.tolist()})
        frames.append(frame)
    utterances = [Utterance(s, e, h.name, "words") for h in heads for s, e in h.speaks]
    utterances += [Utterance(s, e, name, "words") for name, s, e in off_screen]
    video = video_from_frames(path, frames, fps)
    return video, Tracks.from_rows(rows, fps=fps), Transcript.from_utterances(utterances)

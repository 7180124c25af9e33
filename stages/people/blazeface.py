"""MediaPipe's BlazeFace (full range) as a face detector, run by LiteRT on the CPU.

The model (``weights/blazeface_full_range.tflite``, Apache-2.0, the licence beside it) takes a 192 x 192
RGB square in [-1, 1] and scores 2,304 anchors (a 48 x 48 grid, one anchor per cell); each anchor has a
face score (a logit) and 16 numbers: the box's centre offset and size, then six keypoints (the eyes,
the nose tip, the mouth centre, the ears), all in input pixels relative to the anchor's centre. These
facts are MediaPipe's published graph options for this model (``face_detection_full_range.pbtxt``).

A video frame is wider than it is tall, so it is cut into overlapping squares of its short side
(``tiles``) and each square is scaled to 192: a face keeps more pixels than in one letterboxed square,
and no part of the frame is left out. Detections of all squares are merged by weighted non-maximum
suppression (MediaPipe's own merge: overlapping boxes are averaged, weighted by score).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from socialpipe.pipeline.contracts.boxes import Boxes, box_iou
from socialpipe.pipeline.contracts.config import PeopleConfig
from socialpipe.pipeline.contracts.errors import SocialpipeError
from socialpipe.pipeline.media.models import shared, thread_budget

WEIGHTS = Path(__file__).resolve().parent / "weights" / "blazeface_full_range.tflite"
INPUT = 192  # the model's square input side
GRID = 48  # anchors per side (stride 4)
MERGE_IOU = 0.3  # detections overlapping more than this are one face (MediaPipe's min_suppression_threshold)
TILE_OVERLAP = 0.5  # neighbouring squares share at least this share of their side
# BlazeFace's box is a square on the eyes, nose and mouth; MTCNN's (which the active-speaker crop and the
# identity and link settings were measured with) is taller, reaching the forehead and chin. Each box is
# reshaped to MTCNN's on real faces: width and height these multiples of BlazeFace's side, the centre
# moved up by BOX_SHIFT_Y sides (medians over 565 faces both detectors found on 7 real clips; per clip the
# height runs from 1.05 to 1.24 sides: docs/people.md).
BOX_WIDTH, BOX_HEIGHT, BOX_SHIFT_Y = 0.85, 1.18, -0.05
MOUTH_HALF_WIDTH = 0.45  # mouth corners: this many eye distances either side of the mouth centre (see landmarks)

_CENTRES = (np.arange(GRID, dtype=np.float32) + 0.5) / GRID
ANCHORS = np.stack(np.meshgrid(_CENTRES, _CENTRES), axis=-1).reshape(-1, 2)  # (2304, 2) x, y; x fastest


def tiles(width: int, height: int) -> list[tuple[int, int, int]]:
    """Squares (x, y, side) of the frame's short side, spread evenly from one end to the other, so that
    neighbours overlap by at least TILE_OVERLAP of a side (one square for a square frame)."""
    side, long = min(width, height), max(width, height)
    count = 1 if long == side else int(np.ceil((long - side) / (side * (1 - TILE_OVERLAP)))) + 1
    starts = np.linspace(0, long - side, count).round().astype(int)
    return [(int(s), 0, side) if width >= height else (0, int(s), side) for s in starts]


def decode(raw: np.ndarray, logits: np.ndarray, min_score: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The model's outputs for one square -> boxes (n, 4) and keypoints (n, 6, 2) in [0, 1] of the square,
    and scores (n,), for the anchors scoring at least ``min_score``."""
    score = 1.0 / (1.0 + np.exp(-np.clip(logits.reshape(-1), -100.0, 100.0)))
    keep = score >= min_score
    raw, score, anchor = raw[keep] / INPUT, score[keep], ANCHORS[keep]
    centre, size = raw[:, :2] + anchor, raw[:, 2:4]
    boxes = np.concatenate([centre - size / 2, centre + size / 2], axis=1)
    points = raw[:, 4:16].reshape(-1, 6, 2) + anchor[:, None, :]
    return boxes, score, points


def weighted_merge(boxes: np.ndarray, scores: np.ndarray, points: np.ndarray,
                   threshold: float = MERGE_IOU) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """MediaPipe's weighted non-maximum suppression: from the best score down, every remaining box that
    overlaps it by more than ``threshold`` (IoU) joins it, and the group's box and keypoints are their
    score-weighted mean; the group keeps its best score."""
    order = np.argsort(-scores)
    boxes, scores, points = boxes[order], scores[order], points[order]
    left = np.ones(len(boxes), bool)
    out_boxes, out_scores, out_points = [], [], []
    overlap = box_iou(boxes, boxes)
    for i in range(len(boxes)):
        if not left[i]:
            continue
        group = left & (overlap[i] > threshold)
        group[i] = True
        left &= ~group
        weight = scores[group] / scores[group].sum()
        out_boxes.append(weight @ boxes[group])
        out_points.append(np.tensordot(weight, points[group], axes=1))
        out_scores.append(scores[i])
    if not out_boxes:
        return np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros((0, 6, 2), np.float32)
    return np.stack(out_boxes), np.array(out_scores), np.stack(out_points)


def mtcnn_shaped(boxes: np.ndarray) -> np.ndarray:
    """BlazeFace's boxes (n, 4) reshaped to MTCNN's proportions (BOX_WIDTH, BOX_HEIGHT, BOX_SHIFT_Y)."""
    side = boxes[:, 2] - boxes[:, 0]
    cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2 + BOX_SHIFT_Y * side
    half_w, half_h = BOX_WIDTH * side / 2, BOX_HEIGHT * side / 2
    return np.stack([cx - half_w, cy - half_h, cx + half_w, cy + half_h], axis=1)


def landmarks(points: np.ndarray) -> np.ndarray:
    """BlazeFace's six keypoints (n, 6, 2) -> the five points socialpipe's boxes carry (MTCNN's order: the
    eye on the left of the picture, the other eye, the nose, the left and right mouth corners). BlazeFace
    gives the mouth's centre, not its corners: they are put MOUTH_HALF_WIDTH eye distances either side of
    it along the eye line (a mouth is about as wide as the eyes are apart), which is what the mouth crop
    and the frontal-face choice need."""
    eyes = points[:, 1] - points[:, 0]
    mouth = points[:, 3]
    return np.stack([points[:, 0], points[:, 1], points[:, 2], mouth - MOUTH_HALF_WIDTH * eyes,
                     mouth + MOUTH_HALF_WIDTH * eyes], axis=1)


def load_interpreter(path: Path = WEIGHTS):
    """A LiteRT interpreter of the model, tensors allocated (one per process: ``shared``)."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        raise SocialpipeError("people.detector blazeface needs the LiteRT runtime: pip install 'socialpipe[blazeface]' "
                              "(or pip install ai-edge-litert), or use people.detector=mtcnn") from None
    if not path.is_file():
        raise SocialpipeError(f"BlazeFace's weights are missing ({path}); reinstall socialpipe, or use "
                              "people.detector=mtcnn")
    interpreter = Interpreter(model_path=str(path), num_threads=thread_budget())
    interpreter.allocate_tensors()
    return interpreter


class BlazeFaceDetector:
    """MediaPipe's BlazeFace full-range model (shipped inside socialpipe) on overlapping squares of each
    frame: faces with five landmarks, about 3 ms a square on one CPU core. It runs on the CPU whatever
    ``people.device`` says (LiteRT; the device is MTCNN's). ``detect_scale`` does not apply: each square is
    scaled to the model's 192 pixels. Faces shorter than ``min_face_px`` (the reshaped box's height) are
    dropped."""

    kind = "face"

    def __init__(self, settings: PeopleConfig):
        self.min_confidence = settings.min_confidence
        self.min_face = settings.min_face_px
        self.interpreter = shared("blazeface", str(WEIGHTS), load_interpreter)
        details = self.interpreter.get_input_details()[0]
        self.input = details["index"]
        outputs = {int(o["shape"][-1]): o["index"] for o in self.interpreter.get_output_details()}
        self.regressors, self.classifier = outputs[16], outputs[1]

    def square(self, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One square image (any side) -> its detections in [0, 1] of the square."""
        area = rgb.shape[0] > INPUT
        image = cv2.resize(rgb, (INPUT, INPUT), interpolation=cv2.INTER_AREA if area else cv2.INTER_LINEAR)
        self.interpreter.set_tensor(self.input, (image.astype(np.float32) / 127.5 - 1.0)[None])
        self.interpreter.invoke()
        return decode(self.interpreter.get_tensor(self.regressors)[0],
                      self.interpreter.get_tensor(self.classifier)[0], self.min_confidence)

    def detect_one(self, frame: np.ndarray) -> Boxes:
        found_boxes, found_scores, found_points = [], [], []
        for x, y, side in tiles(frame.shape[1], frame.shape[0]):
            boxes, scores, points = self.square(frame[y:y + side, x:x + side])
            offset = np.array([x, y], np.float32)
            found_boxes.append(boxes * side + np.tile(offset, 2))
            found_points.append(points * side + offset)
            found_scores.append(scores)
        boxes, scores, points = weighted_merge(np.concatenate(found_boxes), np.concatenate(found_scores),
                                               np.concatenate(found_points))
        boxes = mtcnn_shaped(boxes)
        keep = (boxes[:, 3] - boxes[:, 1]) >= self.min_face  # the box's height, as MTCNN's window size
        return Boxes(boxes[keep], scores[keep], landmarks(points[keep]))

    def detect(self, frames: list[np.ndarray]) -> list[Boxes]:
        return [self.detect_one(frame) for frame in frames]

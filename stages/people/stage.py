"""The people stage, top to bottom:

0. find the shot cuts (PySceneDetect) on every frame;
1. detect faces (MTCNN, a YOLO face model, or OpenCV's cascade) on every ``step``-th frame,
   streamed so memory stays bounded, and, if configured, people (YOLO, COCO person class);
2. track each kind with an ultralytics tracker (ByteTrack or BoT-SORT) fed our detections,
   its time buffer converted to frames at the detection rate (never an assumed 30 fps); a new
   tracker starts at every cut, so no track crosses one;
3. re-join track pieces of one shot split by a gap (someone leaves and comes back) when
   appearance and position agree, recording why;
4. drop short tracks, smooth the boxes over a few detections and interpolate the frames
   between detections;
5. tie each face track to the person track that holds it.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from socialpipe.pipeline.contracts.artifacts import Tracks, VideoInfo
from socialpipe.pipeline.contracts.boxes import Boxes
from socialpipe.pipeline.contracts.config import FACE_EMBEDDINGS, PeopleConfig
from socialpipe.pipeline.contracts.errors import InputError
from socialpipe.pipeline.contracts.stage import StageInputs
from socialpipe.pipeline.contracts.progress import Counter, ProgressHook, Timer, quiet
from socialpipe.pipeline.contracts.timebase import frame_step, frames_in
from socialpipe.pipeline.media.models import torch_device
from socialpipe.pipeline.media.video import decoded_size, frames_per_batch, stream_frames
from socialpipe.stages.people.detectors import YoloDetector, for_decoded_frames, make_face_detector
from socialpipe.stages.people.identity import identify
from socialpipe.stages.people.postprocess import (HISTOGRAM_SIZE, appearance, finish, pieces, rejoin,
                                                  tie_faces_to_people)
from socialpipe.stages.people.search import FaceSearch
from socialpipe.stages.people.shots import ShotCuts, shot_of
from socialpipe.stages.people.tracking import make_tracker, track

ID_PER_SHOT = 1_000_000  # tracker ids are offset by this per shot before the final renumbering
MIN_DETECTABLE_PX = 12  # MTCNN's first network looks at 12x12 pixels: a frame shorter than that holds no face
BATCH_FRAMES = 8  # frames decoded and detected together, fewer when they are large (video.BATCH_BYTES)


@dataclasses.dataclass
class _Observed:
    """What one detector found over the video: tracked boxes per frame, and each box's appearance."""

    kind: str
    boxes: list[Boxes] = dataclasses.field(default_factory=list)
    looks: list[np.ndarray] = dataclasses.field(default_factory=list)


class PeopleStage:
    """Faces (and optionally people) on stable track ids from a video."""

    def __init__(self, settings: PeopleConfig):
        self.settings = settings

    def check(self, inputs: StageInputs) -> None:
        """Before a run writes anything: the face-identity model loads (a one-line error if its packages are
        missing; it is kept for the run). The face detector loads, or fails with its one-line message, when
        the stage starts."""
        FACE_EMBEDDINGS.build(self.settings.face_embedding, self.settings)
        torch_device("people.device", self.settings.device)  # cuda asked for where there is none: one line now
        width, height = decoded_size(inputs.video, self.settings.max_side)
        seen = min(width, height) * self.settings.detect_scale
        if seen < MIN_DETECTABLE_PX:
            video = inputs.video
            raise InputError(f"{video.path}: its {video.width}x{video.height} frames reach the face detector "
                             f"{seen:.0f} px on their shorter side (people.max_side {self.settings.max_side}, "
                             f"people.detect_scale {self.settings.detect_scale:g}); expected at least "
                             f"{MIN_DETECTABLE_PX} px, the smallest face any detector here can find")

    def run(self, inputs: StageInputs, progress: ProgressHook = quiet) -> Tracks:
        return self.detect(inputs.video, progress)

    def detect(self, video: VideoInfo, progress: ProgressHook = quiet) -> Tracks:
        """Face (and person) tracks of a video, streamed in bounded memory."""
        settings = self.settings
        step = frame_step(video.fps, settings.detect_fps)
        timer = Timer("decode", "shots", "detect", "track", "post", "identity")
        cuts = ShotCuts(video.fps, settings.shot_threshold)
        face_model = FACE_EMBEDDINGS.build(settings.face_embedding, settings)  # loaded (or refused) before the work
        observed, search = self._detect_and_track(video, step, cuts, timer, progress)
        with timer("post"):
            tracks = self._finish(observed, video, step, cuts)
        tracks = dataclasses.replace(tracks, meta={**tracks.meta, "face_search": {  # every: as the detector could
            "every": search.every, "frames": search.counts}})
        with timer("identity"):
            tracks = self._identify(video, tracks, face_model)
        return dataclasses.replace(tracks, meta={**tracks.meta, "timing_s": timer.seconds()})

    def _identify(self, video: VideoInfo, tracks: Tracks, face_model) -> Tracks:
        """The face tracks grouped into persons by face identity (``people.face_embedding``) and, for the tracks
        faces cannot place, by clothing (``people.clothing_threshold``), said in the meta."""
        if face_model is None:
            return dataclasses.replace(tracks, meta={**tracks.meta, "identity": "off (people.face_embedding none)"})
        tracks, found = identify(video, tracks, face_model, self.settings)
        faces = [t for t in tracks.track_ids if tracks.kinds[t] == "face"]
        clothed = {j["track"] for j in found.clothing}
        note = {"model": face_model.name, "threshold": self.settings.identity_threshold,
                "faces_embedded": {str(t): n for t, n in sorted(found.embedded.items())},
                "without_identity": [t for t in faces if t not in found.embedded and t not in clothed],
                "split_where_the_face_changed": list(found.splits),
                "clothing_threshold": self.settings.clothing_threshold,
                "joined_by_clothing": list(found.clothing),  # tracks faces left without identity
                "embeddings": {str(t): [round(float(x), 4) for x in vector]  # to match a gallery's faces
                               for t, vector in sorted((found.embeddings or {}).items())}}
        return dataclasses.replace(tracks, persons=found.persons, meta={**tracks.meta, "identity": note})

    def _detect_and_track(self, video: VideoInfo, step: int, cuts: ShotCuts, timer: Timer,
                          progress: ProgressHook) -> tuple[list[_Observed], FaceSearch]:
        """Every frame decoded (cuts are looked for on each), faces (and people) detected on every step-th and
        tracked, a fresh tracker at every cut; memory holds one batch of frames (and, with ``people.search_every``
        above 1, the few waiting for their shot's next whole-frame search)."""
        settings = self.settings
        buffer_frames = max(frames_in(settings.track_buffer_s, video.fps / step), 1)
        # frames are decoded at most max_side pixels long; detectors see them at detect_scale of the original
        width, height = decoded_size(video, settings.max_side)
        decoded = width / video.width
        at_decoded = for_decoded_frames(settings, decoded)
        detectors = [make_face_detector(at_decoded)]
        if settings.person_detector == "yolo":
            detectors.append(YoloDetector(settings.person_model, "person", at_decoded))
        face_search = FaceSearch(detectors[0], settings.search_every)
        trackers = [make_tracker(settings.tracker, buffer_frames) for _ in detectors]
        observed = [_Observed(detector.kind) for detector in detectors]
        counter = Counter(progress, "people", video.frame_count, "frame")
        batch_frames = frames_per_batch(width, height, most=BATCH_FRAMES)
        frames = stream_frames(video, step=1 if cuts.detector is not None else step, max_side=settings.max_side)
        while True:
            batch, shots_of_batch, seen = [], [], 0
            while len(batch) < batch_frames:
                with timer("decode"):
                    item = next(frames, None)
                if item is None:
                    break
                seen += 1
                with timer("shots"):
                    cuts.add(*item)
                if item[0] % step == 0:
                    batch.append(item)
                    shots_of_batch.append(len(cuts.starts) - 1)
            for k, (detector, found) in enumerate(zip(detectors, observed)):
                with timer("detect"):
                    if k == 0:  # faces: the whole frame searched on some detection frames (search.py)
                        done = face_search.add(batch, shots_of_batch) if batch else face_search.finish()
                    else:
                        done = list(zip(batch, shots_of_batch, detector.detect([frame for _, frame in batch]))) \
                            if batch else []
                with timer("track"):
                    trackers[k] = self._track_batch(trackers[k], done, found, buffer_frames, decoded)
            counter.advance(seen)
            if not batch:
                break
        counter.finish()
        return observed, face_search

    def _track_batch(self, tracker, done, found: _Observed, buffer_frames: int, decoded: float):
        """Detections ((frame index, frame), shot, boxes) through the tracker (a fresh one, with fresh ids, at a
        cut); returns the tracker now in use."""
        for (frame_index, frame), shot, boxes in done:
            if shot != getattr(tracker, "socialpipe_shot", 0):  # a cut: a fresh tracker, fresh ids
                tracker = make_tracker(self.settings.tracker, buffer_frames)
                tracker.socialpipe_shot = shot
            tracked = track(tracker, boxes, frame_index)
            tracked = tracked.replace(track_id=tracked.track_id + shot * ID_PER_SHOT)
            found.looks += [appearance(frame, box) for box in tracked.xyxy]
            found.boxes.append(tracked.scaled(1 / decoded))  # original-frame pixels
        return tracker

    def _finish(self, observed: list[_Observed], video: VideoInfo, step: int, cuts: ShotCuts) -> Tracks:
        """Pieces re-joined, boxes smoothed and filled in, ids numbered by first appearance (faces first, then
        people, each left to right), faces tied to people."""
        settings = self.settings
        parts, kinds, joins, offset, finished_by_kind = [], {}, [], 0, {}
        for found in observed:
            boxes = Boxes.concat(found.boxes) if found.boxes else Boxes.empty(tracked=True)
            looks_array = np.stack(found.looks) if found.looks else np.zeros((0, HISTOGRAM_SIZE), np.float32)
            # a dissolve is found after the fact: what the old shot's tracker drew after it is dropped
            in_shot = shot_of(boxes.frame_index, cuts.starts) == boxes.track_id // ID_PER_SHOT
            boxes, looks_array = boxes[in_shot], looks_array[in_shot]
            boxes, kind_joins = rejoin(boxes, looks_array, video, settings, cuts.starts)
            boxes = finish(boxes, video, step, settings)
            boxes = boxes[shot_of(boxes.frame_index, cuts.starts) == boxes.track_id // ID_PER_SHOT]  # filled frames stay in their shot
            first_seen = {tid: (int(boxes.frame_index[rows[0]]), float(boxes.xyxy[rows[0], 0]))
                          for tid, rows in pieces(boxes).items()}
            ids = sorted(first_seen, key=first_seen.get)  # numbered by first appearance, then left to right
            renumber = {old: offset + i + 1 for i, old in enumerate(ids)}
            offset += len(ids)
            boxes = boxes.replace(track_id=np.array([renumber[int(t)] for t in boxes.track_id], np.int64))
            joins += [{**j, "kept": renumber.get(j["kept"]), "kind": found.kind} for j in kind_joins
                      if j["kept"] in renumber]
            kinds.update({new: found.kind for new in renumber.values()})
            finished_by_kind[found.kind] = boxes
            parts.append(boxes)
        meta = {
            "source": f"people stage: {settings.detector}"
                      + (f" + {settings.person_detector} people" if settings.person_detector != "none" else ""),
            "tracker": settings.tracker, "detect_every_frames": step, "detect_fps": round(video.fps / step, 4),
            "rejoined": [{k: v for k, v in j.items() if k != "joined"} for j in joins],
            "shots": cuts.shots(video.frame_count),
            "shot_detector": f"scenedetect content detector, threshold {settings.shot_threshold:g}, and dissolves "
                             "(a window whose middle frame blends its ends)"
                             if cuts.detector is not None else "off (people.shot_threshold 0): one shot",
            "gradual_cuts": cuts.gradual,
            "shot_picture": cuts.pictures(video.width, video.height),  # black bars the cut detectors left out
        }
        tied = tie_faces_to_people(finished_by_kind["face"], finished_by_kind["person"]) \
            if "person" in finished_by_kind else {}
        return Tracks.from_boxes(Boxes.concat(parts), fps=video.fps, kinds=kinds, meta=meta, person_of_face=tied)

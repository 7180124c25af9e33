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
import itertools
import time

import numpy as np

from socialpipe.pipeline.artifacts import Tracks, VideoInfo
from socialpipe.pipeline.boxes import Boxes
from socialpipe.pipeline.config import PeopleConfig
from socialpipe.pipeline.progress import Counter, ProgressHook, quiet
from socialpipe.pipeline.timebase import frame_step, frames_in
from socialpipe.pipeline.video import decoded_size, frames_per_batch, stream_frames
from socialpipe.stages.people.detectors import YoloDetector, make_face_detector
from socialpipe.stages.people.postprocess import (HISTOGRAM_SIZE, appearance, finish, pieces, rejoin,
                                                  tie_faces_to_people)
from socialpipe.stages.people.shots import ShotCuts, shot_of
from socialpipe.stages.people.tracking import make_tracker, track

ID_PER_SHOT = 1_000_000  # tracker ids are offset by this per shot before the final renumbering
BATCH_FRAMES = 8  # frames decoded and detected together, fewer when they are large (video.BATCH_BYTES)


class PeopleStage:
    """Faces (and optionally people) on stable track ids from a video."""

    def __init__(self, settings: PeopleConfig):
        self.settings = settings

    def run(self, video: VideoInfo, progress: ProgressHook = quiet) -> Tracks:
        settings = self.settings
        step = frame_step(video.fps, settings.detect_fps)
        detect_rate = video.fps / step
        buffer_frames = max(frames_in(settings.track_buffer_s, detect_rate), 1)
        # frames are decoded at most max_side pixels long; detectors see them at detect_scale of the original
        width, height = decoded_size(video, settings.max_side)
        decoded = width / video.width
        at_decoded = dataclasses.replace(settings, detect_scale=min(1.0, settings.detect_scale / decoded),
                                         min_face_px=settings.min_face_px * decoded)
        detectors = [make_face_detector(at_decoded)]
        if settings.person_detector == "yolo":
            detectors.append(YoloDetector(settings.person_model, "person", at_decoded))
        trackers = [make_tracker(settings.tracker, buffer_frames) for _ in detectors]
        detector_kinds = [detector.kind for detector in detectors]
        observed: list[list[Boxes]] = [[] for _ in detectors]  # per detector, tracked boxes per frame
        looks: list[list[np.ndarray]] = [[] for _ in detectors]  # per detector, their appearance
        cuts = ShotCuts(video.fps, settings.shot_threshold)
        shot_ids = ID_PER_SHOT  # track ids of shot k are k * ID_PER_SHOT + the tracker's own id

        timing = {"decode_s": 0.0, "shots_s": 0.0, "detect_s": 0.0, "track_s": 0.0, "post_s": 0.0}
        counter = Counter(progress, "people", video.frame_count, "frame")
        batch_frames = frames_per_batch(width, height, most=BATCH_FRAMES)
        # every frame is decoded (cuts are looked for on each); faces are detected on every step-th
        frames = stream_frames(video, step=1 if cuts.detector is not None else step, max_side=settings.max_side)
        while True:
            started, shots_before = time.perf_counter(), timing["shots_s"]
            batch, shots_of_batch, seen = [], [], 0
            while len(batch) < batch_frames:
                item = next(frames, None)
                if item is None:
                    break
                seen += 1
                tick = time.perf_counter()
                cuts.add(*item)
                timing["shots_s"] += time.perf_counter() - tick
                if item[0] % step == 0:
                    batch.append(item)
                    shots_of_batch.append(len(cuts.starts) - 1)
            timing["decode_s"] += time.perf_counter() - started - (timing["shots_s"] - shots_before)
            if not batch:
                counter.advance(seen)
                break
            for k, (detector, tracker) in enumerate(zip(detectors, trackers)):
                started = time.perf_counter()
                found = detector.detect([frame for _, frame in batch])
                timing["detect_s"] += time.perf_counter() - started
                started = time.perf_counter()
                for (frame_index, frame), shot, detections in zip(batch, shots_of_batch, found):
                    if shot != getattr(tracker, "socialpipe_shot", 0):  # a cut: a fresh tracker, fresh ids
                        tracker = trackers[k] = make_tracker(settings.tracker, buffer_frames)
                        tracker.socialpipe_shot = shot
                    tracked = track(tracker, detections, frame_index)
                    tracked = tracked.replace(track_id=tracked.track_id + shot * shot_ids)
                    looks[k] += [appearance(frame, box) for box in tracked.xyxy]
                    observed[k].append(tracked.scaled(1 / decoded))  # original-frame pixels
                timing["track_s"] += time.perf_counter() - started
            counter.advance(seen)
        counter.finish()
        del detectors  # release the models

        started = time.perf_counter()
        # ids: faces first, then people, each numbered by first appearance, left to right
        parts, kinds, joins, offset, finished_by_kind = [], {}, [], 0, {}
        for detector_kind, boxes_per_frame, appearance_rows in zip(detector_kinds, observed, looks):
            boxes = Boxes.concat(boxes_per_frame) if boxes_per_frame else Boxes.empty(tracked=True)
            looks_array = np.stack(appearance_rows) if appearance_rows else np.zeros((0, HISTOGRAM_SIZE), np.float32)
            boxes, kind_joins = rejoin(boxes, looks_array, video, settings, cuts.starts)
            boxes = finish(boxes, video, step, settings)
            boxes = boxes[shot_of(boxes.frame_index, cuts.starts) == boxes.track_id // ID_PER_SHOT]  # filled frames stay in their shot
            first_seen = {tid: (int(boxes.frame_index[rows[0]]), float(boxes.xyxy[rows[0], 0]))
                          for tid, rows in pieces(boxes).items()}
            ids = sorted(first_seen, key=first_seen.get)  # numbered by first appearance, then left to right
            renumber = {old: offset + i + 1 for i, old in enumerate(ids)}
            offset += len(ids)
            boxes = boxes.replace(track_id=np.array([renumber[int(t)] for t in boxes.track_id], np.int64))
            joins += [{**j, "kept": renumber.get(j["kept"]), "kind": detector_kind} for j in kind_joins
                      if j["kept"] in renumber]
            kinds.update({new: detector_kind for new in renumber.values()})
            finished_by_kind[detector_kind] = boxes
            parts.append(boxes)
        meta = {
            "source": f"people stage: {settings.detector}"
                      + (f" + {settings.person_detector} people" if settings.person_detector != "none" else ""),
            "tracker": settings.tracker, "detect_every_frames": step, "detect_fps": round(detect_rate, 4),
            "rejoined": [{k: v for k, v in j.items() if k != "joined"} for j in joins],
            "shots": cuts.shots(video.frame_count),
            "shot_detector": f"scenedetect content detector, threshold {settings.shot_threshold:g}"
                             if cuts.detector is not None else "off (people.shot_threshold 0): one shot",
        }
        if "person" in finished_by_kind:
            meta["person_of_face"] = {str(k): v for k, v in
                                      tie_faces_to_people(finished_by_kind["face"], finished_by_kind["person"]).items()}
        timing["post_s"] += time.perf_counter() - started
        meta["timing_s"] = {k: round(v, 4) for k, v in timing.items()}
        return Tracks.from_boxes(Boxes.concat(parts), fps=video.fps, kinds=kinds, meta=meta)

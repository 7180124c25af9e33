"""Searching the whole frame on every detection frame against every N-th (``people.search_every``).

    python benchmarks/face_search.py [--clips DIR] [--every 2 3] [--rounds 2]

For every video (the two bundled samples, then every video in ``--clips``), the detection frames the people
stage would detect on (``people.detect_fps``, decoded at most ``people.max_side`` pixels, its shots found by
its shot detector) go to MTCNN twice or more, alternating, in one process: once searched whole, once through
``FaceSearch`` for each ``--every``. Printed per video and setting:
- the face detection time (the shot cuts and decoding are not in it) and its ratio to the whole search's;
- on the frames the setting does not search whole: how many of the faces the whole search finds there are
  re-found (IoU at least 0.5), their mean IoU with the whole search's box, the faces only the re-finding
  has, and for comparison the mean IoU of the proposal nearest each face (where the neighbouring searches
  put it, before the detector moved it).

The whole search is the reference, not the truth. Whether the faces make the right speaker boxes is a
question for the whole pipeline: ``benchmarks/cut_together.py --config se2:people.search_every=2``.
Frames are held in memory: give clips of a minute or two.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = [ROOT / "sample_videos" / "conversation.mp4", ROOT / "sample_videos" / "shots.mp4"]
BATCH = 8  # frames per batch, as the people stage takes them at these sizes


def detection_frames(video):
    """The frames the people stage detects on, with their shots, and the stage's settings at this size."""
    from socialpipe.pipeline.contracts.config import PeopleConfig
    from socialpipe.pipeline.contracts.timebase import frame_step
    from socialpipe.pipeline.media.video import decoded_size, stream_frames
    from socialpipe.stages.people.detectors import for_decoded_frames
    from socialpipe.stages.people.shots import ShotCuts

    settings = PeopleConfig()
    width, _ = decoded_size(video, settings.max_side)
    decoded = width / video.width
    step = frame_step(video.fps, settings.detect_fps)
    cuts = ShotCuts(video.fps, settings.shot_threshold)
    frames, shots = [], []
    for index, frame in stream_frames(video, max_side=settings.max_side):
        cuts.add(index, frame)
        if index % step == 0:
            frames.append((index, frame))
            shots.append(len(cuts.starts) - 1)
    return frames, shots, for_decoded_frames(settings, decoded)


def run_whole(detector, frames):
    found = []
    for start in range(0, len(frames), BATCH):
        found += detector.detect([frame for _, frame in frames[start:start + BATCH]])
    return found


def run_search(detector, frames, shots, every):
    from socialpipe.stages.people.search import FaceSearch

    search = FaceSearch(detector, every)
    done = []
    for start in range(0, len(frames), BATCH):
        done += search.add(frames[start:start + BATCH], shots[start:start + BATCH])
    done += search.finish()
    return [boxes for _, _, boxes in done], search


def agreement(whole, found, between):
    from socialpipe.pipeline.contracts.boxes import box_iou

    refound, total, extra, ious = 0, 0, 0, []
    for k in between:
        ref, mine = whole[k].xyxy, found[k].xyxy
        total += len(ref)
        if len(ref) and len(mine):
            overlap = box_iou(ref, mine)
            hit = overlap.max(axis=1) >= 0.5
            refound += int(hit.sum())
            ious += list(overlap.max(axis=1)[hit])
            extra += int((overlap.max(axis=0) < 0.5).sum())
        else:
            extra += len(mine)
    return refound, total, extra, float(np.mean(ious)) if ious else float("nan")


def measure(path: Path, everies: list[int], rounds: int) -> list[str]:
    from socialpipe.pipeline.media.video import probe
    from socialpipe.stages.people.detectors import MtcnnDetector

    video = probe(path)
    frames, shots, settings = detection_frames(video)
    detector = MtcnnDetector(settings)
    seconds = {every: [] for every in [1, *everies]}
    results = {}
    for _ in range(rounds):
        for every in [1, *everies]:
            started = time.perf_counter()
            results[every] = run_whole(detector, frames) if every == 1 else run_search(detector, frames, shots, every)
            seconds[every].append(time.perf_counter() - started)
    whole = results[1]
    reference = float(np.median(seconds[1]))
    rows = [f"| {path.stem} | whole frame | {len(frames)} | {reference:.2f} s | 1.00x | | | | |"]
    for every in everies:
        found, search = results[every]
        proposals = _proposal_boxes(frames, shots, whole, every)
        between = sorted(proposals)
        refound, total, extra, iou = agreement(whole, found, between)
        _, _, _, proposal_iou = agreement(whole, [proposals.get(k, found[k]) for k in range(len(frames))], between)
        mine = float(np.median(seconds[every]))
        rows.append(f"| {path.stem} | every {every} | {search.counts['whole_frame']} + {search.counts['near_neighbours']}"
                    f" | {mine:.2f} s | {mine / reference:.2f}x | {refound}/{total} | {iou:.3f} | {extra} | "
                    f"{proposal_iou:.3f} |")
    return rows


def _proposal_boxes(frames, shots, whole, every):
    """The proposals the search makes on its frames between searches, as Boxes by frame position."""
    from socialpipe.pipeline.contracts.boxes import Boxes
    from socialpipe.stages.people.search import FaceSearch

    position = {id(frame): k for k, (_, frame) in enumerate(frames)}  # FaceSearch hands the same frames back

    class Reference:  # the whole search's faces; the proposals kept instead of being refined
        proposed = {}

        def detect(self, batch):
            return [whole[position[id(frame)]] for frame in batch]

        def refine(self, batch, proposals):
            for frame, boxes in zip(batch, proposals):
                self.proposed[position[id(frame)]] = Boxes(boxes, np.ones(len(boxes)))
            return [Boxes(boxes, np.ones(len(boxes))) for boxes in proposals]

    reference = Reference()
    run_search(reference, frames, shots, every)
    return reference.proposed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=Path, help="a folder of real videos (never committed)")
    parser.add_argument("--every", type=int, nargs="+", default=[2, 3], help="people.search_every values to compare")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds; the median time is printed")
    args = parser.parse_args()
    videos = SAMPLES + sorted(p for p in (args.clips.iterdir() if args.clips else [])
                              if p.suffix.lower() in {".mp4", ".mkv", ".mov", ".webm"})
    print("Face detection searching the whole frame on every detection frame, or every N-th (the rest re-found near "
          "their neighbours' faces); on the re-found frames, the whole search's faces are the reference\n")
    print("| video | search | frames (whole + re-found) | detection | time vs whole | faces re-found | IoU | "
          "only re-found | proposals' IoU |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for video in videos:
        for row in measure(video, args.every, args.rounds):
            print(row, flush=True)


if __name__ == "__main__":
    main()

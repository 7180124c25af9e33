"""Face detectors side by side: what each finds, against each other, and how long each takes.

    python benchmarks/face_detectors.py [--clips DIR] [--fps 2] [--detectors mtcnn blazeface ...]

A detector is a ``people.detector`` name, or ``NAME:people.key=value[,people.key=value]`` for the same
detector with other people settings (``mtcnn:people.pyramid_factor=0.65``). ``facenet-pytorch`` is the
``mtcnn`` detector's networks run by facenet-pytorch's own ``MTCNN.detect``, as the people stage ran them
until its own run of the cascade (stages/people/mtcnn.py; the same faces, bit for bit):
``--detectors mtcnn facenet-pytorch`` times the two side by side.

For every video (the two bundled samples, then every video in ``--clips``), frames are taken ``--fps``
times a second and given to each detector, as the people stage gives them (decoded at most
``people.max_side`` pixels, the stage's ``detect_scale`` and ``min_face_px``, in the stage's batches of up to
8 frames; the detectors take turns going first on a batch). Printed per video and
detector, from one run:
- faces found, and how many of the first detector's faces the others find too (IoU at least 0.3): the
  first detector is the reference, not the truth, so a face only the other finds counts as "extra";
- the same for the reference's small faces (under 70 px wide) and for its turned faces (eyes less than
  0.6 of their frontal distance apart for the face's width: MTCNN's landmarks);
- milliseconds per frame, and each detector's time as a ratio of the first's.

Whether a detector's faces make the right speaker boxes is a question for the whole pipeline:
``benchmarks/cut_together.py --config blazeface:people.detector=blazeface`` answers it on real footage.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = [ROOT / "sample_videos" / "conversation.mp4", ROOT / "sample_videos" / "shots.mp4"]
SMALL_PX = 70.0
TURNED = 0.6  # eye distance / (0.4 x face width) below this: a face turned away


def turned(landmarks: np.ndarray | None, box: np.ndarray) -> bool:
    if landmarks is None or not np.isfinite(landmarks).all():
        return False
    return float(np.linalg.norm(landmarks[1] - landmarks[0])) < TURNED * 0.4 * float(box[2] - box[0])


def people_settings(name: str):
    """The people settings of a detector given as ``NAME`` or ``NAME:people.key=value,...``."""
    from socialpipe.pipeline.contracts.config import Config, apply_overrides

    detector, _, overrides = name.partition(":")
    extra = [item for item in overrides.split(",") if item]
    return apply_overrides(Config(), [f"people.detector={detector}", *extra]).people


class LibraryCascade:
    """The ``mtcnn`` detector with facenet-pytorch's own ``MTCNN.detect`` running the cascade."""

    kind = "face"

    def __init__(self, settings):
        from socialpipe.stages.people.detectors import MtcnnDetector

        self.detector = MtcnnDetector(settings)

    def detect(self, frames: list[np.ndarray]) -> list:
        from socialpipe.pipeline.contracts.boxes import Boxes
        from socialpipe.stages.people.detectors import _resize

        scale, model = self.detector.scale, self.detector.model
        found = []
        for boxes, probs, points in zip(*model.detect(np.stack(_resize(frames, scale)), landmarks=True)):
            if boxes is None:
                found.append(Boxes.empty())
                continue
            boxes, probs = np.asarray(boxes, np.float32), np.asarray(probs, np.float32)
            keep = probs >= self.detector.min_confidence
            found.append(Boxes(boxes[keep], probs[keep], np.asarray(points, np.float32)[keep]).scaled(1 / scale))
        return found


def _batches(frames) -> Iterator[list[np.ndarray]]:
    """Frames in the batches the people stage detects them in (up to its BATCH_FRAMES, fewer when large)."""
    from socialpipe.pipeline.media.video import frames_per_batch
    from socialpipe.stages.people.stage import BATCH_FRAMES

    batch: list[np.ndarray] = []
    for _, frame in frames:
        batch.append(frame)
        if len(batch) >= frames_per_batch(frame.shape[1], frame.shape[0], most=BATCH_FRAMES):
            yield batch
            batch = []
    if batch:
        yield batch


def measure(video: Path, names: list[str], fps: float) -> dict:
    from socialpipe.pipeline.contracts.config import PeopleConfig
    from socialpipe.pipeline.media.video import decoded_size, probe, stream_frames
    from socialpipe.stages.people.detectors import for_decoded_frames, make_face_detector

    info = probe(video)
    width, _ = decoded_size(info, PeopleConfig().max_side)
    decoded = width / info.width
    settings = PeopleConfig()
    detectors = {}
    for name in names:
        library = name.partition(":")[0] == "facenet-pytorch"
        mine = for_decoded_frames(people_settings(name.replace("facenet-pytorch", "mtcnn", 1)), decoded)
        detectors[name] = LibraryCascade(mine) if library else make_face_detector(mine)
    step = max(1, int(round(info.fps / fps)))
    seconds = dict.fromkeys(names, 0.0)
    found = {name: [] for name in names}
    batches = 0
    for batch in _batches(stream_frames(info, step=step, max_side=settings.max_side)):
        turn = batches % len(names)  # each detector goes first in turn: none always finds the frames in the cache
        for name in names[turn:] + names[:turn]:
            started = time.perf_counter()
            found[name].extend(detectors[name].detect(batch))
            seconds[name] += time.perf_counter() - started
        batches += 1
    return {"frames": len(found[names[0]]), "found": found, "seconds": seconds}


def table(video: Path, result: dict, names: list[str]) -> list[str]:
    from socialpipe.pipeline.contracts.boxes import box_iou

    reference = result["found"][names[0]]
    rows = []
    for name in names:
        kinds = {"all": [0, 0], "small": [0, 0], "turned": [0, 0]}
        extra = 0
        for ref, mine in zip(reference, result["found"][name]):
            for i, box in enumerate(ref.xyxy):
                hit = len(mine) > 0 and box_iou(box, mine.xyxy).max() >= 0.3
                marks = None if ref.landmarks is None else ref.landmarks[i]
                for kind, applies in (("all", True), ("small", box[2] - box[0] < SMALL_PX),
                                      ("turned", turned(marks, box))):
                    if applies:
                        kinds[kind][0] += hit
                        kinds[kind][1] += 1
            extra += sum(len(ref) == 0 or box_iou(box, ref.xyxy).max() < 0.3 for box in mine.xyxy)
        share = lambda k: f"{kinds[k][0]}/{kinds[k][1]}"  # noqa: E731
        ms = 1000 * result["seconds"][name] / max(result["frames"], 1)
        ratio = result["seconds"][name] / max(result["seconds"][names[0]], 1e-9)
        rows.append(f"| {video.stem} | {name} | {sum(len(b) for b in result['found'][name])} | {share('all')} | "
                    f"{share('small')} | {share('turned')} | {extra} | {ms:.1f} | {ratio:.2f}x |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=Path, help="a folder of real videos (never committed)")
    parser.add_argument("--fps", type=float, default=2.0, help="frames a second given to the detectors")
    parser.add_argument("--detectors", nargs="+", default=["mtcnn", "blazeface"],
                        help="people.detector names, each maybe with settings (NAME:people.key=value,...); "
                             "the first is the reference")
    args = parser.parse_args()
    videos = SAMPLES + sorted(p for p in (args.clips.iterdir() if args.clips else [])
                              if p.suffix.lower() in {".mp4", ".mkv", ".mov", ".webm"})
    print(f"Faces found at {args.fps:g} frames a second; 'found by' counts the {args.detectors[0]} faces each "
          "detector also finds (IoU >= 0.3)\n")
    print("| video | detector | faces | found by | small (<70 px) | turned | extra | ms/frame | time vs "
          f"{args.detectors[0]} |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for video in videos:
        for row in table(video, measure(video, args.detectors, args.fps), args.detectors):
            print(row, flush=True)


if __name__ == "__main__":
    main()

"""Two per-frame jobs done the way they are now and the way they were, side by side in one process.

    python benchmarks/frame_work.py [VIDEO ...] [--rounds 3] [--no-720p]

For each video (default: the bundled sample and the sample scaled to 1280x720):
- shot cuts: ``ShotCuts`` over every frame with the frames shrunk linearly (now, PySceneDetect's own way)
  and by area averaging (before); seconds, their ratio, and whether the cuts and dissolves are the same;
- mouth activity: ``measure_mouths`` on ffmpeg's grey frames (now) and on RGB frames turned grey by
  OpenCV (before), for the people stage's tracks; seconds, their ratio, and the correlation of the two
  activities.
The two ways alternate, ``--rounds`` times each; the medians are compared.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "sample_videos" / "conversation.mp4"


def shot_cuts(video, interpolation: int) -> tuple[float, tuple]:
    from socialpipe.pipeline.media.video import stream_frames
    from socialpipe.stages.people import shots

    before, shots.CUT_INTERPOLATION = shots.CUT_INTERPOLATION, interpolation
    try:
        cuts = shots.ShotCuts(video.fps, 27.0)
        frames = list(stream_frames(video, max_side=1280))  # decoded first: only the cutting is timed
        started = time.perf_counter()
        for index, frame in frames:
            cuts.add(index, frame)
        return time.perf_counter() - started, (tuple(cuts.starts), tuple(cuts.gradual))
    finally:
        shots.CUT_INTERPOLATION = before


def rgb_turned_grey(video, step=1, **options):
    """The frames as the mouth fallback had them before: RGB from ffmpeg, turned grey by OpenCV."""
    import cv2

    from socialpipe.pipeline.media.video import stream_frames

    options.pop("grey", None)
    for index, frame in stream_frames(video, step=step, **options):
        yield index, cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)


def mouths(video, tracks, grey: bool):
    from socialpipe.stages.link import mouth

    now = mouth.stream_frames
    mouth.stream_frames = now if grey else rgb_turned_grey
    try:
        started = time.perf_counter()
        found = mouth.measure_mouths(video, tracks, 12.5)
        return time.perf_counter() - started, found
    finally:
        mouth.stream_frames = now


def compare(path: Path, rounds: int) -> None:
    import cv2
    import numpy as np

    from socialpipe.pipeline.contracts.config import PeopleConfig
    from socialpipe.pipeline.media.video import probe
    from socialpipe.stages.people import PeopleStage

    video = probe(path)
    print(f"\n{path.name}: {video.width}x{video.height}, {video.frame_count} frames")
    times = {"linear": [], "area": []}
    cuts = {}
    for _ in range(rounds):
        for name, interpolation in (("linear", cv2.INTER_LINEAR), ("area", cv2.INTER_AREA)):
            seconds, cuts[name] = shot_cuts(video, interpolation)
            times[name].append(seconds)
    linear, area = statistics.median(times["linear"]), statistics.median(times["area"])
    print(f"  shot cuts: linear {linear:.2f} s, area {area:.2f} s, ratio {area / linear:.2f}x; "
          f"same cuts and dissolves: {cuts['linear'] == cuts['area']} {cuts['linear']}")
    tracks = PeopleStage(PeopleConfig()).detect(video)
    times, found = {True: [], False: []}, {}
    for _ in range(rounds):
        for grey in (True, False):
            seconds, found[grey] = mouths(video, tracks, grey)
            times[grey].append(seconds)
    now, before = statistics.median(times[True]), statistics.median(times[False])
    a, b = found[True].activity, found[False].activity
    seen = np.isfinite(a) & np.isfinite(b)
    correlation = float(np.corrcoef(a[seen], b[seen])[0, 1]) if seen.sum() > 2 else float("nan")
    print(f"  mouth activity: grey frames {now:.2f} s, RGB turned grey {before:.2f} s, ratio {before / now:.2f}x; "
          f"activity correlation {correlation:.5f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("videos", nargs="*", type=Path, help="videos to measure (default: the bundled sample)")
    parser.add_argument("--rounds", type=int, default=3, help="times each way runs, alternating")
    parser.add_argument("--no-720p", action="store_true", help="leave out the sample scaled to 720p")
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error(f"--rounds must be at least 1, got {args.rounds}")
    warnings.filterwarnings("ignore")
    from perception import scaled  # benchmarks/ is on the path when this file runs as a script

    folder = Path(tempfile.mkdtemp(prefix="socialpipe-frame-work-"))
    for path in args.videos or [SAMPLE] + ([] if args.no_720p else [scaled(SAMPLE, 720, folder)]):
        compare(path, args.rounds)


if __name__ == "__main__":
    main()

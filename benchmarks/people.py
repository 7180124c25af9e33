"""Speed of the people stage at default settings: video-seconds per wall-second, and where time goes.

    python benchmarks/people.py [--video sample_videos/conversation.mp4]

Runs the stage once to warm up (model load), then once measured, and prints the real-time
factor together with the shares of decoding, detection, tracking (with appearance
histograms) and post-processing (re-join, smoothing, interpolation), all from that one run.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from pipeline.config import PeopleConfig
from pipeline.video import probe
from stages.people import PeopleStage

SAMPLE = Path(__file__).resolve().parent.parent / "sample_videos" / "conversation.mp4"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--video", type=Path, default=SAMPLE)
    args = parser.parse_args()
    video = probe(args.video)
    stage = PeopleStage(PeopleConfig())
    stage.run(video)  # warm-up: model load, caches
    started = time.perf_counter()
    tracks = stage.run(video)
    wall_s = time.perf_counter() - started
    timing = tracks.meta["timing_s"]
    print(f"video: {video.path}, {video.width}x{video.height}, {video.duration_s:.1f} s at {video.fps:g} fps; "
          f"detections every {tracks.meta['detect_every_frames']} frames")
    print(f"people stage: {wall_s:.2f} s wall, {video.duration_s / wall_s:.2f}x real time "
          f"(goal: at least 2x), {len(tracks.track_ids)} tracks")
    for part, seconds in timing.items():
        print(f"  {part[:-2]:<7} {seconds:6.2f} s  {seconds / wall_s:6.1%}")
    rest = wall_s - sum(timing.values())
    print(f"  {'other':<7} {rest:6.2f} s  {rest / wall_s:6.1%}")


if __name__ == "__main__":
    main()

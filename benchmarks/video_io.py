"""Frame streaming against decoding a whole video at once: time and peak memory, side by side.

    python benchmarks/video_io.py [--loops 2] [--step 5] [--only 24] [--height 720]

Makes a longer video by looping the bundled sample (re-encoded at ``--height`` when given), then, each in
a fresh process, (a) streams every ``step``-th frame with ``pipeline.video.stream_frames`` and (b) decodes
the same frames in one ``read_frames`` call; then, for ``--only`` frames spread over the video (what the
identity step asks for), (c) streams every frame and keeps those, and (d) asks ``stream_frames(only=...)``
for them alone. Prints seconds, peak resident memory above the process's baseline, and the ratios
stream / whole and only / every frame.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SAMPLE = Path(__file__).resolve().parent.parent / "sample_videos" / "conversation.mp4"


def measure(mode: str, video_path: str, step: int, only: int = 0) -> dict:
    from socialpipe.pipeline.media.video import probe, read_frames, stream_frames

    video = probe(video_path)
    baseline_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    started = time.perf_counter()
    chosen = set(range(0, video.frame_count, max(video.frame_count // only, 1))) if only else set()
    if mode == "stream":
        checksum = sum(int(frame[0, 0, 0]) for _, frame in stream_frames(video, step=step))
    elif mode == "every":
        checksum = sum(int(frame[0, 0, 0]) for index, frame in stream_frames(video) if index in chosen)
    elif mode == "only":
        checksum = sum(int(frame[0, 0, 0]) for _, frame in stream_frames(video, only=sorted(chosen)))
    else:
        frames = read_frames(video, range(0, video.frame_count, step))
        checksum = int(frames[:, 0, 0, 0].astype(int).sum())
    seconds = time.perf_counter() - started
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    frames = len(chosen) if mode in ("every", "only") else len(range(0, video.frame_count, step))
    return {"seconds": seconds, "extra_mb": peak_mb - baseline_mb, "frames": frames,
            "checksum": checksum, "duration_s": video.duration_s}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--loops", type=int, default=2, help="copies of the sample joined end to end")
    parser.add_argument("--step", type=int, default=5, help="decode every step-th frame (5 = 5 fps at 25 fps)")
    parser.add_argument("--only", type=int, default=24, help="frames spread over the video for (c) and (d)")
    parser.add_argument("--height", type=int, help="re-encode the looped video at this height (e.g. 720)")
    parser.add_argument("--child", nargs=2, metavar=("MODE", "VIDEO"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.child[0], args.child[1], args.step, args.only)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        video = Path(tmp) / "long.mp4"
        encode = ["-vf", f"scale=-2:{args.height}", "-c:a", "copy"] if args.height else ["-c", "copy"]
        subprocess.run(["ffmpeg", "-v", "error", "-stream_loop", str(args.loops - 1), "-i", str(SAMPLE), *encode,
                        str(video)], check=True)
        results = {}
        for mode in ("stream", "whole", "every", "only"):
            out = subprocess.run([sys.executable, __file__, "--step", str(args.step), "--only", str(args.only),
                                  "--child", mode, str(video)], check=True, capture_output=True, text=True).stdout
            results[mode] = json.loads(out.strip().splitlines()[-1])
    stream, whole = results["stream"], results["whole"]
    assert stream["checksum"] == whole["checksum"], "both modes must decode the same frames"
    print(f"video: {stream['duration_s']:.1f} s, {stream['frames']} frames decoded (every {args.step}th)")
    for mode, row in results.items():
        print(f"  {mode:<6} {row['seconds']:6.2f} s  {row['frames'] / row['seconds']:7.1f} frames/s  "
              f"peak memory +{row['extra_mb']:7.1f} MB")
    print(f"ratio stream/whole: time {stream['seconds'] / whole['seconds']:.2f}x, "
          f"peak memory {stream['extra_mb'] / max(whole['extra_mb'], 1e-6):.3f}x")
    every, only = results["every"], results["only"]
    assert every["checksum"] == only["checksum"], "both ways must hand over the same frames"
    print(f"ratio only/every frame ({only['frames']} chosen frames): time {only['seconds'] / every['seconds']:.2f}x")


if __name__ == "__main__":
    main()

"""Peak memory of the people stage against the input's resolution and length, side by side in one run.

    python benchmarks/memory.py [--stage people] [--sizes 640x360,1920x1080,3840x2160,7680x4320] [--seconds 4,60]

Each case is a plain grey h264 video made by ffmpeg (tiny files: 8K for 4 s is about 100 KB), run by
``socialpipe run VIDEO --until STAGE`` in its own process; the peak resident memory comes from the
kernel's accounting of that process (``os.wait4``). Printed: peak MB per case and its ratio to the
smallest case (the peak counts the ffmpeg decoder the run starts). Frames are streamed one at a time
from ffmpeg with the longer side at most ``people.max_side`` (1280) and detected in batches of at most
256 MB, so the peak should stay flat as the length grows and bounded as the resolution grows.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def grey_video(path: Path, size: str, seconds: float) -> Path:
    subprocess.run(["ffmpeg", "-y", "-v", "error", "-f", "lavfi", "-i", f"color=c=gray:size={size}:rate=25",
                    "-f", "lavfi", "-i", "sine=frequency=300:sample_rate=16000", "-t", str(seconds),
                    "-pix_fmt", "yuv420p", "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac", str(path)],
                   check=True)
    return path


def peak_mb(video: Path, out: Path, stage: str) -> tuple[float, float]:
    """(peak resident MB, seconds) of one ``socialpipe run`` in a child process."""
    started = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-c", "from socialpipe.pipeline.cli import main; main()", "run",
                                str(video), "--out", str(out), "--until", stage],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise SystemExit(f"{video.name}: socialpipe failed: {process.stderr.read().decode()[-300:]}")
    return usage.ru_maxrss / 1024, time.perf_counter() - started  # ru_maxrss is in KB on Linux


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stage", default="people", choices=["people", "speech", "link"])
    parser.add_argument("--sizes", default="640x360,1920x1080,3840x2160,7680x4320")
    parser.add_argument("--seconds", default="4,60,300", help="lengths, tried at the smallest size")
    args = parser.parse_args()
    sizes, lengths = args.sizes.split(","), [float(s) for s in args.seconds.split(",")]
    cases = [(size, lengths[0]) for size in sizes] + [(sizes[0], seconds) for seconds in lengths[1:]]
    with tempfile.TemporaryDirectory() as scratch:
        rows = []
        for size, seconds in cases:
            video = grey_video(Path(scratch) / f"grey-{size}-{seconds:g}s.mp4", size, seconds)
            peak, wall = peak_mb(video, Path(scratch) / f"run-{size}-{seconds:g}", args.stage)
            rows.append((size, seconds, video.stat().st_size / 1024, peak, wall))
    base = rows[0][3]
    print(f"socialpipe run --until {args.stage}: peak resident memory by input (one process per case)")
    print(f"{'size':>10} {'seconds':>8} {'file KB':>8} {'peak MB':>8} {'x smallest':>10} {'wall s':>7}")
    for size, seconds, kb, peak, wall in rows:
        print(f"{size:>10} {seconds:>8g} {kb:>8.0f} {peak:>8.0f} {peak / base:>10.2f} {wall:>7.1f}")


if __name__ == "__main__":
    main()

"""Peak memory of the people stage against the input's resolution and length, side by side in one run.

    python benchmarks/memory.py [--stage people] [--sizes 640x360,1920x1080,3840x2160,7680x4320] [--seconds 4,60]

Each case is a plain grey h264 video made by ffmpeg (tiny files: 8K for 4 s is about 100 KB), run by
``socialpipe run VIDEO --until STAGE`` in its own process; the peak resident memory comes from the
kernel's accounting of that process (``os.wait4``). Printed: peak MB per case and its ratio to the
smallest case (the peak counts the ffmpeg decoder the run starts). Frames are streamed one at a time
from ffmpeg with the longer side at most ``people.max_side`` (1280) and detected in batches of at most
256 MB, so the peak should stay flat as the length grows and bounded as the resolution grows.

A second table (``--audio-seconds``) reads the audio track of long recordings as the speech stage does
(``read_audio``: chunks from ffmpeg into one array) and, beside it, as one pipe read that is then copied
(how it was read before): peak MB growth of each and their ratio. The array itself is 4 bytes a sample
at 16 kHz (230 MB an hour); holding it whole is the speech stage's business (see the README).
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
    process = subprocess.Popen([sys.executable, "-c", "from socialpipe.cli import main; main()", "run",
                                str(video), "--out", str(out), "--until", stage],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise SystemExit(f"{video.name}: socialpipe failed: {process.stderr.read().decode()[-300:]}")
    return usage.ru_maxrss / 1024, time.perf_counter() - started  # ru_maxrss is in KB on Linux


_AUDIO_PEAK = """
import resource, subprocess, sys
import numpy as np
from socialpipe.pipeline.media.video import local_file, probe, read_audio
video = probe(sys.argv[1])
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
if sys.argv[2] == "chunked":
    audio = read_audio(video)
else:
    out = subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-i", local_file(video.path), "-vn", "-ac", "1",
                          "-ar", "16000", "-f", "f32le", "pipe:1"], capture_output=True, check=True).stdout
    audio = np.frombuffer(out, np.float32).copy()
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024, audio.nbytes / 2**20)
"""


def audio_peak_mb(video: Path, how: str) -> tuple[float, float]:
    """(peak growth MB while reading, MB of samples) of reading ``video``'s audio ``how`` in a child process."""
    out = subprocess.run([sys.executable, "-c", _AUDIO_PEAK, str(video), how], capture_output=True, text=True,
                         check=True).stdout.split()
    return float(out[0]), float(out[1])


def audio_table(lengths: list[float], scratch: Path) -> None:
    print("\nreading the audio track: peak growth in MB, chunked (read_audio) vs one pipe read + copy")
    print(f"{'seconds':>8} {'samples MB':>10} {'chunked':>8} {'whole':>8} {'chunked/whole':>13}")
    for seconds in lengths:
        video = scratch / f"audio-{seconds:g}s.mkv"
        subprocess.run(["ffmpeg", "-y", "-v", "error", "-f", "lavfi", "-i", f"color=size=32x32:rate=1:duration={seconds}",
                        "-f", "lavfi", "-i", f"sine=frequency=300:duration={seconds}", "-c:v", "libx264",
                        "-c:a", "aac", str(video)], check=True)
        chunked, samples = audio_peak_mb(video, "chunked")
        whole, _ = audio_peak_mb(video, "whole")
        print(f"{seconds:>8g} {samples:>10.0f} {chunked:>8.0f} {whole:>8.0f} {chunked / whole:>13.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stage", default="people", choices=["people", "speech", "link"])
    parser.add_argument("--sizes", default="640x360,1920x1080,3840x2160,7680x4320")
    parser.add_argument("--seconds", default="4,60,300", help="lengths, tried at the smallest size")
    parser.add_argument("--audio-seconds", default="600,3600", help="lengths of the audio-reading table ('' skips it)")
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
    if args.audio_seconds:
        with tempfile.TemporaryDirectory() as scratch:
            audio_table([float(s) for s in args.audio_seconds.split(",")], Path(scratch))


if __name__ == "__main__":
    main()

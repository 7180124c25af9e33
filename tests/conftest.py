"""Shared builders: the bundled sample, tiny generated videos, and an in-process CLI runner."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SAMPLE_DIR = REPO / "sample_videos"
SAMPLE_VIDEO = SAMPLE_DIR / "conversation.mp4"
SAMPLE_TRACKS = SAMPLE_DIR / "conversation.tracks.json"
SAMPLE_TRANSCRIPT = SAMPLE_DIR / "conversation.transcript.json"
SAMPLE_LINKS = SAMPLE_DIR / "conversation.links.json"
# Data the tests may read but the project does not ship (real dataset annotations), in a folder
# beside the checkout unless SOCIALPIPE_DEV_DATA names another; tests that need it skip without it.
DEV_DATA = Path(os.environ.get("SOCIALPIPE_DEV_DATA", REPO.parent / "shared" / "data"))
GROUND_TRUTH_ARGS = ["--tracks", str(SAMPLE_TRACKS), "--transcript", str(SAMPLE_TRANSCRIPT),
                     "--links", str(SAMPLE_LINKS)]


def reachable(host: str) -> bool:
    """Whether this machine can open a connection to ``host`` (offline-error tests skip when it can)."""
    try:
        socket.create_connection((host, 443), timeout=3).close()
        return True
    except OSError:
        return False


def make_video(path: Path, seconds: float = 2.0, size: str = "160x90", fps: int = 10, audio: bool = True) -> Path:
    """A small h264 (+ aac sine) mp4 made by ffmpeg's test sources."""
    command = ["ffmpeg", "-y", "-v", "error", "-f", "lavfi", "-i", f"testsrc=size={size}:rate={fps}:duration={seconds}"]
    if audio:
        command += ["-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=16000:duration={seconds}", "-c:a", "aac"]
    command += ["-c:v", "libx264", "-pix_fmt", "yuv420p", str(path)]
    subprocess.run(command, check=True)
    return path


def video_from_frames(path: Path, frames, fps: float = 10.0) -> Path:
    """An h264 mp4 of the given RGB frames (n, H, W, 3), H and W even."""
    frames = list(frames)
    height, width = frames[0].shape[:2]
    encoder = subprocess.Popen(["ffmpeg", "-y", "-v", "error", "-f", "rawvideo", "-pix_fmt", "rgb24",
                                "-s", f"{width}x{height}", "-r", str(fps), "-i", "pipe:0", "-c:v", "libx264",
                                "-crf", "18", "-pix_fmt", "yuv420p", str(path)], stdin=subprocess.PIPE)
    for frame in frames:
        encoder.stdin.write(frame.astype("uint8").tobytes())
    encoder.stdin.close()
    assert encoder.wait() == 0
    return path


@pytest.fixture(scope="session")
def tiny_video(tmp_path_factory) -> Path:
    return make_video(tmp_path_factory.mktemp("videos") / "tiny.mp4")


@pytest.fixture(scope="session")
def silent_video(tmp_path_factory) -> Path:
    return make_video(tmp_path_factory.mktemp("videos") / "silent.mp4", audio=False)


class CliResult:
    def __init__(self, code: int, out: str, err: str):
        self.code, self.out, self.err = code, out, err

    def __repr__(self) -> str:
        return f"CliResult(code={self.code}, out={self.out!r}, err={self.err[-2000:]!r})"


@pytest.fixture
def socialpipe(capsys, monkeypatch):
    """Call the real console entry point in-process: ``socialpipe("run", ...) -> CliResult``. A command
    that holds its own process to ``--threads`` (one worker, in-process) sets thread limits for the whole
    process; they are put back after the test, so later tests do not run on one thread."""
    import torch

    from socialpipe.cli import main
    from socialpipe.pipeline.run.parallel import THREAD_LIMITS

    limits, threads = {variable: os.environ.get(variable) for variable in THREAD_LIMITS}, torch.get_num_threads()

    def invoke(*args: str) -> CliResult:
        capsys.readouterr()
        monkeypatch.setattr(sys, "argv", ["socialpipe", *map(str, args)])
        code = 0
        try:
            main()
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    yield invoke
    for variable, value in limits.items():
        if value is None:
            os.environ.pop(variable, None)
        else:
            os.environ[variable] = value
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def sample_gt_run(tmp_path_factory) -> Path:
    """A finished ground-truth run of the sample up to the link stage (copy it before changing it)."""
    from socialpipe.pipeline.run.orchestrator import RunRequest, run

    out = tmp_path_factory.mktemp("runs") / "sample"
    run(RunRequest(video=SAMPLE_VIDEO, out=out, tracks_file=SAMPLE_TRACKS, transcript_file=SAMPLE_TRANSCRIPT,
                   links_file=SAMPLE_LINKS, until="link"))
    return out

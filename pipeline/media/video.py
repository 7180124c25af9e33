"""Reading videos: probing and random access to frames through decord, streamed frames and audio
through ffmpeg. Frames are always RGB, uint8, (H, W, 3).

Nothing here holds a whole video in memory except :func:`read_frames`, whose caller names the
frames it wants.
"""

from __future__ import annotations

import json
import queue
import re
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

from socialpipe.pipeline.contracts.artifacts import VideoInfo
from socialpipe.pipeline.contracts.errors import InputError, NoAudioError, SocialpipeError, first_line
from socialpipe.pipeline.contracts.timebase import frame_to_time, time_to_frame

AUDIO_SAMPLE_RATE = 16_000
BATCH_BYTES = 256 << 20  # decoded frames a consumer batches together, at most (one frame always fits)
PREFETCH_BYTES = 32 << 20  # decoded frames read ahead of the caller, at most (two frames always)
# libav error codes decord reports as bare numbers (FFERRTAG values), in words
_FFMPEG_ERRORS = {1094995529: "invalid data found when processing input", 541478725: "end of file"}


def _require(tool: str) -> str:
    found = shutil.which(tool)
    if found is None:
        raise SocialpipeError(f"{tool} is not installed; socialpipe needs ffmpeg's tools (Debian: apt-get install ffmpeg)")
    return found


def local_file(path: str | Path) -> str:
    """A path as ffmpeg and decord must get it: absolute, so that a file named like a protocol
    (``concat:a.mp4|b.mp4``, ``http:...``) is read as the local file it is, never as that protocol."""
    return str(Path(path).resolve())


def _ffprobe_streams(path: Path) -> list[dict]:
    result = subprocess.run(
        [_require("ffprobe"), "-v", "error", "-show_entries", "stream=codec_type,codec_name,width,height",
         "-of", "json", local_file(path)],
        capture_output=True, text=True,
    )
    if result.returncode != 0:
        reason = (result.stderr.strip().splitlines() or ["unreadable"])[-1]
        raise InputError(f"{path}: not a readable video ({reason}); expected a video file such as mp4, mkv, mov or avi")
    return json.loads(result.stdout or "{}").get("streams", [])


def probe(path: str | Path) -> VideoInfo:
    """Check that ``path`` is a decodable video and describe it."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file; expected a video file")
    if path.is_dir():
        raise InputError(f"{path}: is a folder; expected a video file")
    if not path.is_file():
        raise InputError(f"{path}: is a fifo, socket or device, not a file; expected a video file")
    if path.stat().st_size == 0:
        raise InputError(f"{path}: is empty (0 bytes); expected a video file")
    streams = _ffprobe_streams(path)
    if not any(s.get("codec_type") == "video" for s in streams):
        raise InputError(f"{path}: has no video stream; expected a video file")
    has_audio = any(s.get("codec_type") == "audio" for s in streams)
    reader = _open(path)
    frame_count, fps = len(reader), float(reader.get_avg_fps())
    if frame_count < 1 or not fps > 0:
        raise InputError(f"{path}: reports {frame_count} frames at {fps} fps; expected a video with frames")
    height, width = _decode(path, lambda: reader[0]).shape[:2]
    _decode(path, lambda: reader[frame_count - 1])  # a truncated file fails here, not halfway through a stage
    info = VideoInfo(path=str(path), fps=fps, frame_count=frame_count, width=int(width), height=int(height),
                     duration_s=float(frame_to_time(frame_count, fps)), has_audio=has_audio)
    return _with_presentation_times(info, _decode(path, lambda: reader.get_frame_timestamp(range(frame_count))))


def _with_presentation_times(video: VideoInfo, stamps: np.ndarray) -> VideoInfo:
    """``video`` as it must be addressed given its decoded frames' (start, end) presentation times in
    seconds: unchanged when frame ``i`` starts within half a frame of ``i / fps`` (constant frame rate,
    a start offset allowed), else a variable frame rate video whose grid frames are looked up by time."""
    stamps = np.asarray(stamps, dtype=np.float64).reshape(-1, 2)
    starts = stamps[:, 0] - stamps[0, 0]
    if not np.isfinite(starts).all() or (np.diff(starts) < 0).any():
        return video  # no usable timestamps: the average rate is all there is
    if np.abs(starts - np.arange(len(starts)) / video.fps).max() <= 0.5 / video.fps:
        return video
    duration = max(float(stamps[-1, 1] - stamps[0, 0]), float(starts[-1]) + 1 / video.fps)
    return replace(video, frame_times_s=tuple(starts), duration_s=duration,
                   frame_count=max(1, int(round(duration * video.fps))))


def _open(path: Path):
    return _decode(path, lambda: _decord().VideoReader(local_file(path), ctx=_decord().cpu(0), num_threads=1))


def _decord():
    import decord

    decord.logging.set_level(decord.logging.QUIET)  # errors reach the user through InputError instead
    return decord


def _decode(path: Path, action):
    """Run a decord call, turning its failure into one readable line."""
    try:
        return action()
    except _decord().DECORDError as exc:
        message = re.sub(r"^\[[^\]]*\]\s*\S+:\d+:\s*(Error:\s*)?", "", first_line(str(exc), None))[:120]
        message = re.sub(r"\s*failed with (-?\d+)", lambda m: f": {_FFMPEG_ERRORS.get(abs(int(m[1])), 'decoder error')}",
                         message)
        if "Failed to measure duration/frame-count" in str(exc):  # an animated GIF, an image: nothing to address
            raise InputError(f"{path}: its container gives no frame count or duration (an animated GIF or an "
                             f"image?); expected a video file such as mp4, mkv, mov or webm (convert it: ffmpeg -i "
                             f"{path.name} {path.stem}.mp4)") from None
        raise InputError(f"{path}: cannot decode the video, it looks truncated or corrupt ({message}); "
                         "expected an intact video file") from None


def read_frames(video: VideoInfo, frame_indices: Sequence[int]) -> np.ndarray:
    """The given frames as an (n, H, W, 3) RGB uint8 array."""
    indices = [int(i) for i in frame_indices]
    bad = [i for i in indices if not 0 <= i < video.frame_count]
    if bad:
        raise InputError(f"frame {bad[0]} is outside the video's frames 0..{video.frame_count - 1}")
    if not indices:
        return np.zeros((0, video.height, video.width, 3), np.uint8)
    return _open(Path(video.path)).get_batch(video.decoded_frames(indices).tolist()).asnumpy()


def uniform_frame_indices(video: VideoInfo, count: int, start_s: float = 0.0, end_s: float | None = None) -> list[int]:
    """``count`` frame indices spread evenly over [start_s, end_s): the centres of equal slices."""
    if count < 1:
        raise InputError(f"asked for {count} frames; expected at least 1")
    end_s = video.duration_s if end_s is None else min(end_s, video.duration_s)
    if not 0 <= start_s < end_s:
        raise InputError(f"time window {start_s:.2f}-{end_s:.2f}s is empty or outside the video (0-{video.duration_s:.2f}s)")
    slice_s = (end_s - start_s) / count
    return [time_to_frame(start_s + (k + 0.5) * slice_s, video.fps, video.frame_count) for k in range(count)]


def read_uniform_frames(video: VideoInfo, count: int, start_s: float = 0.0, end_s: float | None = None):
    """(frames (n, H, W, 3) RGB, frame indices, times in seconds) for ``count`` evenly spread frames."""
    indices = uniform_frame_indices(video, count, start_s, end_s)
    return read_frames(video, indices), indices, [frame_to_time(i, video.fps) for i in indices]


def read_frames_at(video: VideoInfo, times_s: Sequence[float]) -> np.ndarray:
    """The frames shown at the given times, (n, H, W, 3) RGB."""
    late = [t for t in times_s if not 0 <= t <= video.duration_s]
    if late:
        raise InputError(f"time {late[0]:.2f}s is outside the video (0-{video.duration_s:.2f}s)")
    return read_frames(video, [time_to_frame(t, video.fps, video.frame_count) for t in times_s])


def decoded_size(video: VideoInfo, max_side: int | None = None) -> tuple[int, int]:
    """(width, height) frames are decoded at: the video's own size, or shrunk (even sides) so that the
    longer side is at most ``max_side``."""
    longer = max(video.width, video.height)
    if max_side is None or longer <= max_side:
        return video.width, video.height
    scale = max_side / longer
    return max(2, int(round(video.width * scale / 2)) * 2), max(2, int(round(video.height * scale / 2)) * 2)


def frames_per_batch(width: int, height: int, most: int = 16) -> int:
    """How many decoded RGB frames of this size fit in BATCH_BYTES (at least 1, at most ``most``)."""
    return max(1, min(most, BATCH_BYTES // (width * height * 3)))


def stream_frames(video: VideoInfo, step: int = 1, max_side: int | None = None,
                  only: Sequence[int] | None = None) -> Iterator[tuple[int, np.ndarray]]:
    """Yield (frame index, (H, W, 3) RGB frame) for every ``step``-th frame, or for the frames ``only`` lists (in
    order), decoded at most ``max_side`` pixels on the longer side (see :func:`decoded_size`).

    An ffmpeg process decodes, picks the frames and scales them, and this generator hands them over one at a
    time from its pipe, read ahead by at most PREFETCH_BYTES (see :func:`_piped_frames`): memory holds a few
    frames whatever the video's resolution and length. (decord's
    reader, used for random access, keeps memory that grows with the frames it has decoded when streaming
    a long video beside torch: 2.7 GB after 5 min of 640x360 in the people stage.) Callers that work in
    batches take them from the stream (:func:`frames_per_batch` sizes them by bytes).
    """
    if step < 1:
        raise InputError(f"frame step must be >= 1, got {step}")
    if only is not None:
        yield from _stream_only(video, sorted(set(only)), max_side)
        return
    width, height = decoded_size(video, max_side)
    # a variable frame rate video is decoded whole and its grid frames picked here by time
    filters = [f"select=not(mod(n\\,{step}))"] if step > 1 and not video.variable_rate else []
    if (width, height) != (video.width, video.height):
        filters.append(f"scale={width}:{height}:flags=area")
    wanted = range(0, video.frame_count, step)
    # for each wanted grid frame, the decoded frame it shows (the stream's own order when that is the same)
    shown = video.decoded_frames(wanted) if video.variable_rate else range(len(wanted))
    decoded = _piped_frames(video, ["-vf", ",".join(filters)] if filters else [], width, height)
    try:
        frame, count = None, -1
        for index, source in zip(wanted, shown):
            while count < source:
                frame = next(decoded, None)
                if frame is None:
                    return  # the stream holds fewer frames than the container said: stop where it ends
                count += 1
            yield index, frame
    finally:
        decoded.close()


def _piped_frames(video: VideoInfo, filter_args: list[str], width: int, height: int) -> Iterator[np.ndarray]:
    """The frames an ffmpeg process decodes from ``video`` through ``filter_args`` (``-vf ...`` or
    ``-filter_script:v FILE``) as RGB ``(height, width, 3)`` arrays, in order, until the stream ends; the
    process is ended when the caller stops.

    A thread reads the pipe ahead of the caller, up to PREFETCH_BYTES of frames (at least two): ffmpeg
    decodes the next frames while the caller works on this one (the pipe itself holds 64 KB, a fraction of
    a frame, so without it ffmpeg waited on every read: decoding 720p took 2.1-2.4 s of the people stage's
    time, 0.3-0.5 s read ahead)."""
    command = [_require("ffmpeg"), "-nostdin", "-v", "error", "-i", local_file(video.path), "-map", "0:v:0",
               *filter_args, "-fps_mode", "passthrough", "-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:1"]
    frame_bytes = width * height * 3
    errors = tempfile.TemporaryFile()  # a file, not a pipe: ffmpeg never blocks on a full stderr
    decoder = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=errors, bufsize=frame_bytes)
    ahead: queue.Queue = queue.Queue(maxsize=max(2, PREFETCH_BYTES // frame_bytes))
    stop = threading.Event()
    reader = threading.Thread(target=_read_ahead, args=(decoder.stdout, frame_bytes, ahead, stop), daemon=True,
                              name="socialpipe-decode")
    reader.start()
    try:
        while (data := ahead.get()) is not None:
            yield np.frombuffer(data, np.uint8).reshape(height, width, 3)
        if decoder.wait() != 0:  # it ended by itself, and failed (frames it gave before were handed over)
            errors.seek(0)
            reason = (errors.read().decode(errors="replace").strip().splitlines() or ["unknown error"])[-1]
            raise InputError(f"{video.path}: ffmpeg stopped decoding its frames ({reason[:300]}); expected a "
                             "readable video stream")
    finally:
        stop.set()
        if decoder.poll() is None:
            decoder.kill()
        reader.join()
        decoder.stdout.close()
        decoder.wait()
        errors.close()


def _read_ahead(stream, frame_bytes: int, ahead: queue.Queue, stop: threading.Event) -> None:
    """Whole frames from ``stream`` into ``ahead`` until the stream ends or ``stop`` is set, then None."""

    def put(item) -> bool:
        while not stop.is_set():
            try:
                ahead.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    try:
        while not stop.is_set():
            data = stream.read(frame_bytes)
            if len(data) != frame_bytes or not put(data):
                break
    except (OSError, ValueError):  # the decoder was ended under us
        pass
    finally:
        put(None)


def _stream_only(video: VideoInfo, frames: list[int], max_side: int | None) -> Iterator[tuple[int, np.ndarray]]:
    """The listed frames alone: ffmpeg still decodes the stream up to the last one, but converts and hands over
    only those (a few frames of a 720p video cost a fraction of streaming them all). A variable frame rate
    video is streamed whole and the frames picked here."""
    frames = [f for f in frames if 0 <= f < video.frame_count]
    if not frames:
        return
    if video.variable_rate:
        wanted = set(frames)
        for index, frame in stream_frames(video, max_side=max_side):
            if index in wanted:
                yield index, frame
            if index >= frames[-1]:
                return
        return
    width, height = decoded_size(video, max_side)
    filters = [f"select={_frame_search(frames)}"] + ([f"scale={width}:{height}:flags=area"]
                                      if (width, height) != (video.width, video.height) else [])
    with tempfile.NamedTemporaryFile("w", suffix=".filter", delete=False) as script:  # too long for a command line
        script.write(",".join(filters))
    decoded = _piped_frames(video, ["-frames:v", str(len(frames)), "-filter_script:v", script.name], width, height)
    try:
        yield from zip(frames, decoded)  # the stream may hold fewer frames than the container said
    finally:
        decoded.close()
        Path(script.name).unlink(missing_ok=True)


def _frame_search(frames: list[int]) -> str:
    """An ffmpeg expression true on the (sorted, distinct) frame numbers ``frames`` alone: a binary search
    (``if(lt(n, middle), left half, right half)``), so it nests only log2(len(frames)) deep and each decoded
    frame is tested against about that many numbers. A plain sum of ``eq(n, f)`` terms nests one level per
    frame, and ffmpeg refuses an expression nested deeper than about 100: asked for 110 frames or more, the
    decoder stopped at once and no frame came (a 20 s clip with the face identity step's one face per 0.5 s
    already asked for more)."""
    if len(frames) == 1:
        return f"eq(n\\,{frames[0]})"
    middle = len(frames) // 2
    return f"if(lt(n\\,{frames[middle]})\\,{_frame_search(frames[:middle])}\\,{_frame_search(frames[middle:])})"


AUDIO_CHUNK_S = 30.0  # seconds of audio a stream hands over at a time


def stream_audio(video: VideoInfo, sample_rate: int = AUDIO_SAMPLE_RATE,
                 chunk_s: float = AUDIO_CHUNK_S) -> Iterator[np.ndarray]:
    """The audio track as consecutive chunks of mono float32 samples in [-1, 1] at ``sample_rate`` Hz,
    ``chunk_s`` seconds each (the last one shorter): an ffmpeg process decodes and resamples, and
    memory holds one chunk whatever the recording's length."""
    if not video.has_audio:
        raise NoAudioError(f"{video.path}: has no audio track; the speech stage needs one "
                           "(or give the transcript with --transcript FILE)")
    command = [_require("ffmpeg"), "-nostdin", "-v", "error", "-i", local_file(video.path), "-vn", "-ac", "1",
               "-ar", str(sample_rate), "-f", "f32le", "pipe:1"]
    chunk_bytes = max(1, int(chunk_s * sample_rate)) * 4
    with tempfile.TemporaryFile() as errors:  # a file, not a pipe: ffmpeg never blocks on a full stderr
        decoder = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=errors)
        try:
            while data := decoder.stdout.read(chunk_bytes):
                yield np.frombuffer(data[: len(data) // 4 * 4], dtype=np.float32)
            if decoder.wait() != 0:
                errors.seek(0)
                reason = (errors.read().decode(errors="replace").strip().splitlines() or ["unknown error"])[-1]
                raise InputError(f"{video.path}: cannot decode the audio ({reason}); expected a readable audio track")
        finally:
            decoder.stdout.close()
            if decoder.poll() is None:
                decoder.kill()
            decoder.wait()


def read_audio_file(path: str | Path, max_s: float, sample_rate: int = AUDIO_SAMPLE_RATE) -> np.ndarray:
    """At most the first ``max_s`` seconds of an audio (or video) file's sound as mono float32 samples at
    ``sample_rate`` Hz (a voice sample); a file ffmpeg cannot read is an InputError naming it."""
    command = [_require("ffmpeg"), "-nostdin", "-v", "error", "-i", local_file(path), "-vn", "-ac", "1",
               "-ar", str(sample_rate), "-t", f"{max_s:g}", "-f", "f32le", "pipe:1"]
    done = subprocess.run(command, capture_output=True)
    if done.returncode != 0:
        reason = (done.stderr.decode(errors="replace").strip().splitlines() or ["unknown error"])[-1]
        raise InputError(f"{path}: cannot read its sound ({reason}); expected an audio file such as .wav")
    return np.frombuffer(done.stdout[: len(done.stdout) // 4 * 4], dtype=np.float32)


def read_audio(video: VideoInfo, sample_rate: int = AUDIO_SAMPLE_RATE) -> np.ndarray:
    """The whole audio track as mono float32 samples in [-1, 1] at ``sample_rate`` Hz (4 bytes a sample:
    230 MB an hour), read in chunks into one array sized from the video's duration, so that the peak is
    the array itself, not the array plus a copy of the decoder's output."""
    samples = np.empty(int(video.duration_s * sample_rate) + sample_rate, dtype=np.float32)
    filled = 0
    for chunk in stream_audio(video, sample_rate):
        if filled + len(chunk) > len(samples):  # the audio outlasts the video: grow by half
            samples = np.resize(samples, max(filled + len(chunk), len(samples) * 3 // 2))
        samples[filled:filled + len(chunk)] = chunk
        filled += len(chunk)
    return samples[:filled].copy() if filled < len(samples) // 2 else samples[:filled]

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from socialpipe.pipeline.contracts.errors import InputError, NoAudioError
from socialpipe.pipeline.contracts.timebase import frame_step
from socialpipe.pipeline.media.video import (
    AUDIO_SAMPLE_RATE,
    probe,
    read_audio,
    read_frames_at,
    read_uniform_frames,
    stream_audio,
    stream_frames,
    uniform_frame_indices,
)
from tests.conftest import SAMPLE_VIDEO


def test_probe_describes_the_sample():
    video = probe(SAMPLE_VIDEO)
    assert (video.width, video.height, video.fps) == (640, 360, 25.0)
    assert video.has_audio and 20.0 <= video.duration_s <= 40.0
    assert video.duration_s == pytest.approx(video.frame_count / video.fps)


def test_uniform_frames_are_rgb_and_evenly_spread(tiny_video):
    video = probe(tiny_video)  # 2 s at 10 fps, ffmpeg's testsrc
    frames, indices, times = read_uniform_frames(video, 4)
    assert frames.shape == (4, 90, 160, 3) and frames.dtype == np.uint8
    assert indices == [2, 7, 12, 17] and times == pytest.approx([0.2, 0.7, 1.2, 1.7])
    assert uniform_frame_indices(video, 2, start_s=1.0, end_s=2.0) == [12, 17]


def test_frames_are_rgb(tmp_path):
    import subprocess

    path = tmp_path / "red.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "color=c=0xE01010:size=64x36:duration=0.5",
                    "-c:v", "libx264", "-pix_fmt", "yuv420p", str(path)], check=True)
    red = read_uniform_frames(probe(path), 1)[0][0, 18, 32]
    assert red[0] > 180 and red[1] < 60 and red[2] < 60


def test_frames_at_times_and_bad_times(tiny_video):
    video = probe(tiny_video)
    assert read_frames_at(video, [0.0, 1.05]).shape[0] == 2
    with pytest.raises(InputError, match="outside the video"):
        read_frames_at(video, [5.0])
    with pytest.raises(InputError, match="empty or outside"):
        uniform_frame_indices(video, 3, start_s=3.0)


def test_stream_visits_every_step_th_frame_in_bounded_batches(tiny_video):
    video = probe(tiny_video)
    seen = [(index, frame.shape) for index, frame in stream_frames(video, step=3)]
    assert [i for i, _ in seen] == list(range(0, video.frame_count, 3))
    assert all(shape == (90, 160, 3) for _, shape in seen)
    assert frame_step(video.fps, 5.0) == 2 and frame_step(video.fps, 50.0) == 1


def test_frames_read_ahead_are_the_decoder_s_in_order_and_a_caller_that_stops_ends_the_reading(tiny_video):
    """A thread reads the decoder's pipe ahead of the caller (a few frames, bounded by bytes): the frames are
    ffmpeg's own in order, and a caller that stops early ends the decoder and the thread."""
    import subprocess
    import threading

    video = probe(tiny_video)
    direct = subprocess.run(["ffmpeg", "-v", "error", "-i", str(tiny_video), "-map", "0:v:0", "-f", "rawvideo",
                             "-pix_fmt", "rgb24", "pipe:1"], capture_output=True, check=True).stdout
    expected = np.frombuffer(direct, np.uint8).reshape(-1, video.height, video.width, 3)
    streamed = np.stack([frame for _, frame in stream_frames(video)])
    assert np.array_equal(streamed, expected)

    def readers():
        return [t for t in threading.enumerate() if t.name == "socialpipe-decode"]

    before = len(readers())
    stream = stream_frames(video)
    next(stream)
    assert len(readers()) == before + 1
    stream.close()
    assert len(readers()) == before


def test_only_the_chosen_frames_stream_and_they_are_the_frames_a_full_stream_gives(tiny_video):
    video = probe(tiny_video)
    everything = {index: frame.copy() for index, frame in stream_frames(video, max_side=80)}
    chosen = [video.frame_count - 1, 0, 7, 7, video.frame_count + 5]  # out of range and repeats are dropped
    picked = list(stream_frames(video, max_side=80, only=chosen))
    assert [i for i, _ in picked] == [0, 7, video.frame_count - 1]
    assert all(np.array_equal(frame, everything[i]) for i, frame in picked) and picked[0][1].shape[1] == 80
    assert list(stream_frames(video, only=[])) == []


def test_hundreds_of_chosen_frames_stream_too(tmp_path):
    """ffmpeg refuses a select expression nested deeper than about 100 levels: a sum of one test per frame gave
    no frame at all from 110 frames on (the identity step asks for a face per 1.5 s of each track and the
    clothes of each, hundreds in a long video). The chosen frames are searched for by halves instead."""
    from tests.conftest import make_video

    video = probe(make_video(tmp_path / "long.mp4", seconds=12.0, size="32x18", fps=25, audio=False))
    everything = {index: frame.copy() for index, frame in stream_frames(video)}
    chosen = sorted({*range(0, video.frame_count, 2), 1, 3, 299})  # 152 frames, some side by side
    picked = list(stream_frames(video, only=chosen))
    assert [i for i, _ in picked] == [f for f in chosen if f < video.frame_count] and len(picked) > 150
    assert all(np.array_equal(frame, everything[i]) for i, frame in picked)


def test_a_decoder_that_fails_is_an_error_not_an_empty_stream(tiny_video):
    """The chosen frames' expression once failed in ffmpeg with stderr thrown away: the stream was silently empty
    and the identity step embedded no face. A failing decoder is now a one-line InputError with ffmpeg's reason."""
    from socialpipe.pipeline.media.video import _piped_frames

    video = probe(tiny_video)
    with pytest.raises(InputError, match=r"ffmpeg stopped decoding its frames \(.*\); expected a readable video"):
        list(_piped_frames(video, ["-vf", "select=nosuchfunction(n)"], video.width, video.height))
    assert len(list(_piped_frames(video, [], video.width, video.height))) == video.frame_count


def test_audio_is_16k_mono(tiny_video):
    video = probe(tiny_video)
    audio = read_audio(video)
    assert audio.dtype == np.float32 and abs(len(audio) - 32000) < 1600
    assert 0.1 < np.abs(audio).max() <= 1.0


def test_audio_streams_in_chunks_that_make_the_whole_track(tiny_video):
    video = probe(tiny_video)
    chunks = list(stream_audio(video, chunk_s=0.25))
    assert all(len(c) == 4000 for c in chunks[:-1]) and 0 < len(chunks[-1]) <= 4000
    assert np.array_equal(np.concatenate(chunks), read_audio(video))


def test_audio_longer_than_the_video_is_read_whole(tmp_path):
    import subprocess

    path = tmp_path / "long_audio.mkv"  # 1 s of picture, 3 s of sound
    subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "color=size=32x32:duration=1:rate=10",
                    "-f", "lavfi", "-i", "sine=frequency=440:duration=3", "-c:v", "libx264", "-c:a", "pcm_s16le",
                    str(path)], check=True)
    video = probe(path)
    assert video.duration_s == pytest.approx(1.0) and len(read_audio(video)) == pytest.approx(48000, abs=400)


def test_no_audio_is_an_error_for_audio_only(silent_video):
    video = probe(silent_video)
    assert not video.has_audio
    assert read_uniform_frames(video, 2)[0].shape[0] == 2
    with pytest.raises(NoAudioError, match="has no audio track"):
        read_audio(video)


@pytest.mark.parametrize("make, message", [
    (lambda p: p, "no such file"),
    (lambda p: (p.write_bytes(b""), p)[1], "is empty"),
    (lambda p: (p.write_text("not a video at all"), p)[1], "not a readable video"),
    (lambda p: (p.write_bytes(SAMPLE_VIDEO.read_bytes()[:150_000]), p)[1], "truncated or corrupt"),
    (lambda p: (p.write_bytes(SAMPLE_VIDEO.read_bytes()[:3000]), p)[1], "not a readable video"),
])
def test_bad_videos_are_clear_errors(tmp_path, make, message):
    with pytest.raises(InputError, match=message):
        probe(make(tmp_path / "bad.mp4"))


def test_audio_only_file_is_not_a_video(tmp_path):
    import subprocess

    path = tmp_path / "tone.m4a"
    subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "sine=duration=1", str(path)], check=True)
    with pytest.raises(InputError, match="no video stream"):
        probe(path)


def test_folder_is_not_a_video(tmp_path):
    with pytest.raises(InputError, match="is a folder"):
        probe(tmp_path)


def test_ffmpeg_is_required():
    assert shutil.which("ffmpeg") and shutil.which("ffprobe")


def test_a_file_named_like_a_protocol_is_read_as_itself(tmp_path, tiny_video, monkeypatch):
    """``concat:a.mp4|b.mp4`` is a legal file name; ffmpeg and decord must not read a.mp4 and b.mp4 instead."""
    monkeypatch.chdir(tmp_path)
    shutil.copy(tiny_video, "a.mp4")
    shutil.copy(SAMPLE_VIDEO, "concat:a.mp4|a.mp4")
    video = probe(Path("concat:a.mp4|a.mp4"))
    assert (video.width, video.height) == (640, 360)  # the sample, not the tiny clip twice
    assert len(read_audio(video)) / AUDIO_SAMPLE_RATE > 30


def test_streams_decode_large_frames_small_in_byte_sized_batches():
    from socialpipe.pipeline.media.video import BATCH_BYTES, decoded_size, frames_per_batch

    video = probe(SAMPLE_VIDEO)
    assert decoded_size(video, 1280) == (640, 360) and decoded_size(video, 320) == (320, 180)
    frames = [frame.shape for _, frame in stream_frames(video, step=100, max_side=320)]
    assert frames == [(180, 320, 3)] * len(range(0, video.frame_count, 100))
    assert frames_per_batch(7680, 4320) == max(1, BATCH_BYTES // (7680 * 4320 * 3)) <= 2
    assert frames_per_batch(640, 360) == 16


def _variable_rate_video(path: Path) -> Path:
    """100 frames, frame k showing its tens as the grey of its left half and its units as the right's: frames 0-49 at 25 fps (0-1.96 s), then 50-99 at
    10 fps (from 2.00 s), so the average rate (14.5 fps) puts frame 50 at 3.45 s."""
    import subprocess

    frames = np.zeros((100, 48, 64, 3), np.uint8)
    frames[:, :, :32] = (np.arange(100) // 10 * 25)[:, None, None, None]
    frames[:, :, 32:] = (np.arange(100) % 10 * 25)[:, None, None, None]
    subprocess.run(["ffmpeg", "-v", "error", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", "64x48", "-r", "25",
                    "-i", "pipe:0", "-vf", "setpts='if(lt(N,50),N/25,2+(N-50)/10)/TB'", "-fps_mode", "passthrough",
                    "-enc_time_base", "1:1000", "-c:v", "libx264", "-qp", "0", "-pix_fmt", "yuv444p", str(path)],
                   input=frames.tobytes(), check=True)
    return path


def test_variable_frame_rate_times_come_from_the_decoder(tmp_path):
    video = probe(_variable_rate_video(tmp_path / "vfr.mp4"))
    assert video.variable_rate and video.frame_times_s[50] == pytest.approx(2.0)
    assert video.duration_s == pytest.approx(7.0, abs=0.1)  # the last frame lasts as long as the container says
    assert video.frame_count == round(video.duration_s * video.fps)

    def shown(frames):  # the decoded frame a picture is
        return [int(round(f[24, 16, 0] / 25)) * 10 + int(round(f[24, 48, 0] / 25)) for f in frames]

    # the picture at a time is the one the decoder shows then, to the grid's resolution (1 / 14.5 s):
    # decoded frame 50 starts at 2.00 s, not at 50 / average fps = 3.45 s
    times = np.array([0.5, 1.96, 2.0, 2.35, 3.45, 6.9])
    grid_times = np.floor(times * video.fps + 1e-6) / video.fps
    expected = np.searchsorted(np.asarray(video.frame_times_s), grid_times + 1e-6, side="right") - 1
    assert shown(read_frames_at(video, times)) == expected.tolist()
    assert expected.tolist() == [12, 48, 48, 53, 63, 98] and 50 in shown(read_frames_at(video, [2.05]))
    # streamed grid frames show the same pictures as random access, at every step
    grid = list(range(video.frame_count))
    by_index = dict(zip(grid, shown(read_uniform_frames(video, video.frame_count)[0])))
    for step in (1, 3):
        streamed = list(stream_frames(video, step=step))
        assert [i for i, _ in streamed] == grid[::step]
        assert shown(f for _, f in streamed) == [by_index[i] for i in grid[::step]]
    chosen = [97, 3, 50, 51, 3]  # only these frames (sorted, once each): the same pictures
    assert [(i, shown([f])[0]) for i, f in stream_frames(video, only=chosen)] == [(i, by_index[i]) for i in (3, 50, 51, 97)]
    # each grid frame's picture is the one on screen at its time: started at or before it, not yet replaced
    pts = np.asarray(video.frame_times_s)
    picture = np.array([by_index[i] for i in grid])
    grid_times = np.arange(len(grid)) / video.fps
    assert np.all(pts[picture] <= grid_times + 1e-6)
    assert np.all((picture == len(pts) - 1) | (pts[np.minimum(picture + 1, len(pts) - 1)] > grid_times))


def test_constant_rate_video_keeps_plain_indices(tiny_video):
    video = probe(tiny_video)
    assert not video.variable_rate and video.frame_times_s is None
    assert video.decoded_frames([0, 5, 19]).tolist() == [0, 5, 19]

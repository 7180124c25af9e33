"""Generate the bundled sample conversation and its ground truth.

    python sample_videos/make_sample.py [--out sample_videos]

Writes ``conversation.mp4`` (640x360, 25 fps, h264 + aac) and its ground truth:
``conversation.tracks.json`` (face boxes with 5-point landmarks on stable ids),
``conversation.transcript.json`` (who said what, when) and ``conversation.links.json``
(voice -> track, the off-screen voice unlinked).

The scene: three people talk in turns, each with a distinct espeak-ng voice; a fourth
voice speaks from off screen. The faces are the public-domain astronaut photograph
that scikit-image bundles (NASA, Eileen Collins), varied per person by mirroring,
colour and scale. Each mouth opens with its owner's speech loudness, heads sway, and
the person on the right walks out of frame and comes back.

Needs espeak-ng and ffmpeg (Debian packages) and scikit-image.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import wave
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from socialpipe.pipeline.contracts.artifacts import SpeakerLink, SpeakerLinks, Tracks, Transcript, Utterance

WIDTH, HEIGHT, FPS = 640, 360, 25
AUDIO_RATE = 22_050  # espeak-ng's native rate
GAP_S = 0.35  # silence between turns

# Facts about skimage.data.astronaut(), measured once with facenet-pytorch's MTCNN:
# the face box and its 5 landmarks (left eye, right eye, nose, left/right mouth corner).
SOURCE_FACE_XYXY = np.array([181.05, 62.16, 267.75, 172.05])
SOURCE_LANDMARKS = np.array([[205.01, 101.73], [246.76, 103.71], [224.67, 128.96], [201.72, 139.25], [245.27, 141.86]])
SOURCE_CROP = (115, 20, 335, 330)  # head and shoulders, x0, y0, x1, y1


@dataclass(frozen=True)
class Person:
    name: str
    track_id: int
    voice: str  # espeak-ng voice+variant
    pitch: int  # espeak-ng -p, 0-99
    speed: int  # espeak-ng -s, words per minute
    card_x: float  # left edge of the portrait in the frame, pixels
    card_y: float
    scale: float  # source pixels -> frame pixels
    mirror: bool
    tint: tuple[float, float, float]  # RGB gains
    sway_phase: float


PEOPLE = {
    "Alice": Person("Alice", 1, "en-us+f3", 70, 160, 30, 78, 0.72, False, (1.0, 1.0, 1.0), 0.0),
    "Bob": Person("Bob", 2, "en-gb+m3", 30, 150, 245, 70, 0.70, True, (1.12, 0.96, 0.80), 1.7),
    "Carol": Person("Carol", 3, "en-gb-scotland+f2", 55, 170, 455, 82, 0.68, False, (0.82, 0.95, 1.18), 3.1),
}
OFF_SCREEN = Person("Dana", 0, "en-us+whisper", 50, 150, 0, 0, 0, False, (1, 1, 1), 0)  # a radio whisper

SCRIPT = [
    ("Alice", "Good morning everyone, thanks for joining today."),
    ("Bob", "Happy to be here. Shall we start with the launch schedule?"),
    ("Carol", "Yes. The engineers finished the final checks yesterday."),
    ("Alice", "Great news. Bob, what does the weather look like?"),
    ("Bob", "The forecast is clear for the whole week."),
    ("Carol", "I will fetch the mission notes, back in a moment."),
    ("Dana", "This is mission control. All systems are ready."),
    ("Alice", "Thank you, control. We will confirm shortly."),
    ("Bob", "Carol should be back soon with the notes."),
    ("Carol", "I am back. The notes say we launch at noon."),
    ("Alice", "Perfect. Let us get started."),
]
LEAVER = "Carol"
LEAVE_LINE, RETURN_LINE = "I will fetch", "I am back"
WALK_S = 1.2  # time to walk out of or into the frame


def speak(person: Person, text: str, workdir: Path) -> np.ndarray:
    """espeak-ng's rendering of ``text`` as float32 samples at AUDIO_RATE, silence trimmed."""
    out = workdir / "utterance.wav"
    subprocess.run(["espeak-ng", "-v", person.voice, "-p", str(person.pitch), "-s", str(person.speed),
                    "-w", str(out), text], check=True)
    with wave.open(str(out)) as handle:
        assert handle.getframerate() == AUDIO_RATE, handle.getframerate()
        samples = np.frombuffer(handle.readframes(handle.getnframes()), np.int16).astype(np.float32) / 32768
    loud = np.flatnonzero(np.abs(samples) > 0.01)
    return samples[loud[0]:loud[-1] + 1] * 0.8


def build_timeline(workdir: Path):
    """Place the script's lines one after another; return the per-speaker audio and the utterances."""
    clips, t = [], 0.6
    for speaker, text in SCRIPT:
        person = PEOPLE.get(speaker, OFF_SCREEN)
        audio = speak(person, text, workdir)
        if speaker == LEAVER and text.startswith(RETURN_LINE):
            t += WALK_S  # time to walk back in before speaking
        clips.append((speaker, text, t, audio))
        t += len(audio) / AUDIO_RATE + GAP_S
    total_s = t + 0.5
    tracks = {name: np.zeros(int(total_s * AUDIO_RATE), np.float32) for name in [*PEOPLE, OFF_SCREEN.name]}
    utterances = []
    for speaker, text, start, audio in clips:
        first = int(round(start * AUDIO_RATE))
        tracks[speaker][first:first + len(audio)] += audio
        utterances.append(Utterance(first / AUDIO_RATE, (first + len(audio)) / AUDIO_RATE, speaker, text))
    return tracks, utterances, total_s


def mouth_openness(track: np.ndarray, frame_count: int) -> np.ndarray:
    """Per video frame, 0 (closed) to 1 (wide open), from the speaker's loudness over 40 ms."""
    window = int(0.04 * AUDIO_RATE)
    centres = (np.arange(frame_count) + 0.5) / FPS * AUDIO_RATE
    rms = np.array([np.sqrt(np.mean(track[max(int(c) - window, 0):int(c) + window] ** 2) + 1e-12) for c in centres])
    peak = rms.max() if rms.max() > 0 else 1.0
    return np.clip(np.sqrt(rms / peak) * 1.4 - 0.15, 0, 1)


def portrait(person: Person, source: np.ndarray) -> np.ndarray:
    x0, y0, x1, y1 = SOURCE_CROP
    card = source[y0:y1, x0:x1].astype(np.float32) * np.array(person.tint, np.float32)
    card = np.clip(card, 0, 255).astype(np.uint8)
    if person.mirror:
        card = card[:, ::-1]
    size = (int(round((x1 - x0) * person.scale)), int(round((y1 - y0) * person.scale)))
    return cv2.resize(np.ascontiguousarray(card), size, interpolation=cv2.INTER_AREA)


def to_frame(person: Person, points: np.ndarray, offset: tuple[float, float]) -> np.ndarray:
    """Source-image points (k, 2) -> frame pixels for a person's portrait placed at ``offset``."""
    x0, y0, x1, _ = SOURCE_CROP
    xs = (x1 - points[:, 0]) if person.mirror else (points[:, 0] - x0)
    return np.stack([xs * person.scale + offset[0], (points[:, 1] - y0) * person.scale + offset[1]], axis=1)


def walk_offset(person: Person, t: float, leave_s: float, back_s: float) -> float:
    """Extra x shift of the leaver: slides right out of frame after ``leave_s``, back in before ``back_s``."""
    if person.name != LEAVER:
        return 0.0
    distance = WIDTH - person.card_x + 10
    if leave_s <= t < leave_s + WALK_S:
        return distance * (t - leave_s) / WALK_S
    if leave_s + WALK_S <= t < back_s - WALK_S:
        return distance
    if back_s - WALK_S <= t < back_s:
        return distance * (back_s - t) / WALK_S
    return 0.0


def background() -> np.ndarray:
    ramp = np.linspace(0, 1, HEIGHT, dtype=np.float32)[:, None, None]
    wall = (1 - ramp) * np.array([196, 204, 214], np.float32) + ramp * np.array([150, 160, 176], np.float32)
    frame = np.broadcast_to(wall, (HEIGHT, WIDTH, 3)).copy()
    frame[300:] = (120, 92, 70)  # table
    return frame.astype(np.uint8)


def open_encoder(mix: np.ndarray, workdir: Path, video_path: Path) -> subprocess.Popen:
    """An ffmpeg process that takes raw RGB frames on stdin and writes them with ``mix`` (float samples at
    AUDIO_RATE) as the sample's h264 + aac mp4."""
    wav_path = workdir / "mix.wav"
    with wave.open(str(wav_path), "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(AUDIO_RATE)
        handle.writeframes((np.clip(mix, -1, 1) * 32767).astype(np.int16).tobytes())
    return subprocess.Popen(
        ["ffmpeg", "-y", "-v", "error", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{WIDTH}x{HEIGHT}",
         "-r", str(FPS), "-i", "pipe:0", "-i", str(wav_path), "-c:v", "libx264", "-preset", "slow",
         "-crf", "27", "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "48k", "-ac", "1", "-ar", "16000",
         "-movflags", "+faststart", "-shortest", str(video_path)],
        stdin=subprocess.PIPE,
    )


def main_for(render_to) -> None:
    """The generators' command line: ``--out`` folder (default: beside the script)."""
    parser = argparse.ArgumentParser(description=sys.modules[render_to.__module__].__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).parent)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    render_to(args.out)


def render(out_dir: Path) -> None:
    from skimage import data

    source = data.astronaut()  # RGB
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        audio_tracks, utterances, total_s = build_timeline(workdir)
        frame_count = int(total_s * FPS)
        leave_s = next(u.end_s for u in utterances if u.speaker == LEAVER and u.text.startswith(LEAVE_LINE)) + 0.3
        back_s = next(u.start_s for u in utterances if u.speaker == LEAVER and u.text.startswith(RETURN_LINE)) - 0.3
        openness = {name: mouth_openness(audio_tracks[name], frame_count) for name in PEOPLE}
        cards = {name: portrait(p, source) for name, p in PEOPLE.items()}
        base = background()
        rows = []

        video_path = out_dir / "conversation.mp4"
        encoder = open_encoder(sum(audio_tracks.values()), workdir, video_path)
        for frame_index in range(frame_count):
            t = frame_index / FPS
            frame = base.copy()
            for name, person in PEOPLE.items():
                card = cards[name]
                dx = 7 * np.sin(2 * np.pi * t / 5.0 + person.sway_phase) + walk_offset(person, t, leave_s, back_s)
                dy = 3 * np.sin(2 * np.pi * t / 3.3 + person.sway_phase)
                ox, oy = int(round(person.card_x + dx)), int(round(person.card_y + dy))
                # paste the portrait, clipped to the frame
                h, w = card.shape[:2]
                fx0, fx1 = max(ox, 0), min(ox + w, WIDTH)
                if fx1 <= fx0:
                    continue
                frame[oy:oy + h, fx0:fx1] = card[:, fx0 - ox:fx1 - ox]
                landmarks = to_frame(person, SOURCE_LANDMARKS, (ox, oy))
                if person.mirror:  # image-left eye and mouth corner swap sides
                    landmarks = landmarks[[1, 0, 2, 4, 3]]
                left_corner, right_corner = landmarks[3], landmarks[4]
                centre = (left_corner + right_corner) / 2 + np.array([0, 1.5])
                half_w = np.linalg.norm(right_corner - left_corner) * 0.32
                half_h = half_w * 0.6 * openness[name][frame_index]
                if half_h >= 0.8:
                    cv2.ellipse(frame, (int(round(centre[0])), int(round(centre[1]))),
                                (int(round(half_w)), int(round(half_h))), 0, 0, 360, (70, 18, 28), -1, cv2.LINE_AA)
                corners = to_frame(person, SOURCE_FACE_XYXY.reshape(2, 2), (ox, oy))
                x1, x2 = sorted(corners[:, 0])
                y1, y2 = corners[:, 1]
                visible = (min(x2, WIDTH) - max(x1, 0)) / (x2 - x1)
                if visible >= 0.5:  # ground truth counts a face once half of it is in the frame
                    rows.append({"track_id": person.track_id, "frame_index": frame_index,
                                 "xyxy": [max(x1, 0.0), y1, min(x2, WIDTH), y2], "confidence": 1.0,
                                 "landmarks": landmarks.tolist() if visible >= 1.0 else None})
            encoder.stdin.write(frame.tobytes())
        encoder.stdin.close()
        if encoder.wait() != 0:
            raise SystemExit("ffmpeg failed to encode the sample video")

    provenance = {"source": "ground truth, sample_videos/make_sample.py"}
    Tracks.from_rows(rows, fps=FPS, meta=provenance).save(out_dir / "conversation.tracks.json")
    Transcript.from_utterances(utterances, provenance).save(out_dir / "conversation.transcript.json")
    links = [SpeakerLink(name, p.track_id, 1.0, name) for name, p in PEOPLE.items()]
    links.append(SpeakerLink(OFF_SCREEN.name, None, 1.0, OFF_SCREEN.name, {"note": "speaks from off screen"}))
    SpeakerLinks(tuple(links), provenance).save(out_dir / "conversation.links.json")
    print(f"wrote {video_path} ({video_path.stat().st_size / 1e6:.2f} MB, {total_s:.1f} s, {frame_count} frames)")


def main() -> None:
    main_for(render)


if __name__ == "__main__":
    main()

"""``socialpipe inspect``: a readable summary of a run folder and rendered previews.

The preview video shows every track's box with its id and linked speaker name, the
current speaker's box highlighted, and the current subtitle; the contact sheet shows
a few evenly spread frames the same way.
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path

import cv2
import numpy as np

from socialpipe.pipeline.contracts.artifacts import (Answer, Names, SpeakerLinks, Tracks, Transcript, VideoInfo,
                                                     load_json, read_json)
from socialpipe.pipeline.contracts.outputs import labelled
from socialpipe.pipeline.media.drawing import FONT, FONT_SCALE, colour_of, draw_box, encode_png, put_text
from socialpipe.pipeline.contracts.errors import InputError
from socialpipe.pipeline.contracts.io import sha256_file, temporary_sibling, write_bytes_atomic
from socialpipe.pipeline.contracts.progress import Counter, ProgressHook, quiet
from socialpipe.pipeline.run.rundir import MANIFEST, edited_artifact
from socialpipe.pipeline.run.stage_table import NAMES_FILE, STAGE_TABLE, VIDEO
from socialpipe.pipeline.contracts.timebase import format_clock, frame_to_time
from socialpipe.pipeline.media.video import local_file, read_frames, stream_frames, uniform_frame_indices



@dataclass
class RunContents:
    path: Path
    video: VideoInfo
    tracks: Tracks | None
    transcript: Transcript | None
    links: SpeakerLinks | None
    answer: Answer | None
    manifest: dict

    @cached_property
    def video_file(self) -> tuple[Path | None, str | None]:
        """(the run's video file, None) when the file ``video.json`` names is there and is the video this run was
        made from (its sha256 is the one ``manifest.json`` recorded); else (None, why not). Only that file is
        ever served or linked: ``video.json`` is a file anyone can edit."""
        path = Path(self.video.path)
        recorded = (self.manifest.get("video") or {}).get("sha256") if isinstance(self.manifest, dict) else None
        if not path.is_file():
            return None, f"the video {self.video.path} is not there"
        if not isinstance(recorded, str):
            return None, f"the run records no hash of its video, so {self.video.path} is not trusted"
        if sha256_file(path) != recorded:
            return None, f"{self.video.path} is not this run's video (its sha256 is not the one manifest.json records)"
        return path, None

    @cached_property
    def persons(self) -> tuple[dict[int, int], set[int]]:
        """(track -> person, the persons seen as several tracks): the link stage's persons (voices and face
        identity), else the people stage's face identity. One person is drawn in one colour, whatever the shot."""
        if self.links is not None and self.links.person_of_track:
            person = dict(self.links.person_of_track)
        else:
            person = dict(self.tracks.persons) if self.tracks is not None else {}
        counts: dict[int, int] = {}
        for p in person.values():
            counts[p] = counts.get(p, 0) + 1
        return person, {p for p, n in counts.items() if n > 1}

    @cached_property
    def final_transcript(self) -> Transcript | None:
        """The transcript with the final labels (the person speaking each utterance, ``SpeakerLinks.labelled``)
        when the run has links, else the voices'."""
        return None if self.transcript is None else labelled(self.transcript, self.links)

    @cached_property
    def speaking_by_frame(self) -> dict[int, dict[int, float]]:
        """frame -> {face track: active-speaker probability} from the link stage's scores."""
        by_frame: dict[int, dict[int, float]] = {}
        for tid, pairs in (self.links.speaking_scores if self.links is not None else {}).items():
            for frame, value in pairs:
                by_frame.setdefault(frame, {})[tid] = value
        return by_frame


def load_run(path: str | Path) -> RunContents:
    path = Path(path)
    if not path.is_dir():
        raise InputError(f"{path}: no such run folder; expected the --out folder of 'socialpipe run'")
    missing = [name for name in (MANIFEST, VIDEO.file) if not (path / name).is_file()]
    if len(missing) == 2 and not any((path / spec.file).is_file() for spec in STAGE_TABLE):
        raise InputError(f"{path}: not a socialpipe run folder (no {MANIFEST} / {VIDEO.file}); "
                         "expected the --out folder of 'socialpipe run'")
    if missing:
        raise InputError(f"{path}: the run's {' and '.join(missing)} is missing (deleted?); run socialpipe run VIDEO "
                         f"--out {path} again to make it (the other artifacts are remade or kept)")
    manifest = read_json(path / MANIFEST)
    if not isinstance(manifest, dict):
        raise InputError(f"{path / MANIFEST}: expected a JSON object (the run's manifest), found "
                         f"{type(manifest).__name__}")
    found = {spec.name: load_json(spec.artifact, path / spec.file) if (path / spec.file).is_file() else None
             for spec in STAGE_TABLE}
    if (path / NAMES_FILE).is_file():  # the names the run was given apply to its links
        named = next(spec for spec in STAGE_TABLE if spec.named)
        if found[named.name] is not None:
            found[named.name] = found[named.name].named(load_json(Names, path / NAMES_FILE).names)
    return RunContents(path, _find_video(load_json(VideoInfo, path / VIDEO.file), path, manifest), found["people"],
                       found["speech"], found["link"], found["answer"], manifest)


def _find_video(video: VideoInfo, run_dir: Path, manifest: dict) -> VideoInfo:
    """The run's video where ``video.json`` names it; else, when the run folder was moved or shared with its video,
    a file of the same name beside the run folder or inside it whose sha256 is the one the run recorded."""
    named = Path(video.path)
    recorded = (manifest.get("video") or {}).get("sha256")
    if named.is_file() or not isinstance(recorded, str):
        return video
    for candidate in (run_dir.parent / named.name, run_dir / named.name):
        if candidate.is_file() and sha256_file(candidate) == recorded:
            return replace(video, path=str(candidate.resolve()))
    return video


def summary(run: RunContents) -> str:
    video = run.video
    lines = [f"run {run.path}",
             f"video   {video.path}: {video.width}x{video.height}, {video.fps:g} fps, {video.duration_s:.1f} s, "
             f"{'with' if video.has_audio else 'no'} audio"]
    for stage, entry in run.manifest.get("stages", {}).items():
        if stage != "video":
            lines.append(f"stage   {stage:<7} {entry.get('source')} ({entry.get('seconds', 0):.2f} s)")
    for spec in (VIDEO, *STAGE_TABLE):
        if edited_artifact(run.path, run.manifest, spec.name):
            lines.append(f"edited  {spec.file} was changed after the run wrote it (its sha256 is not the one "
                         "manifest.json records): what follows shows the changed file; socialpipe run makes it again")
    for removed in run.manifest.get("removed", [])[-4:]:
        lines.append(f"removed {removed['stage']:<7} {', '.join(removed['files'])}: {removed['because']} "
                     f"({removed['at']})")
    names = track_names(run.links)
    if run.tracks is not None:
        lines.append(f"people  {len(run.tracks.track_ids)} tracks, {len(run.tracks)} boxes")
        for tid in run.tracks.track_ids:
            track = run.tracks.for_track(tid)
            first, last = frame_to_time(int(track.frame_index.min()), video.fps), frame_to_time(
                int(track.frame_index.max()), video.fps)
            label = f" ({names[tid]})" if tid in names else ""
            lines.append(f"  track {tid}{label}: {run.tracks.kinds[tid]}, {len(track)} boxes, "
                         f"{format_clock(first)}-{format_clock(last)}")
    if run.transcript is not None:
        talk = run.transcript.talk_time_s()
        lines.append(f"speech  {len(run.transcript)} utterances, {len(talk)} voices")
        for voice in run.transcript.speakers:
            count = sum(u.speaker == voice for u in run.transcript.utterances)
            lines.append(f"  {voice}: {talk.get(voice, 0.0):.1f} s talking, {count} utterances")
    if run.links is not None:
        lines.append(f"links   {len(run.links)} voices")
        for link in run.links.links:
            target = ("off screen (unlinked)" if link.track_id is None else
                      f"track {link.track_id}" if len(link.track_ids) == 1 else
                      f"tracks {', '.join(map(str, link.track_ids))} (person {link.person_id})")
            label = run.links.person_label(link.voice)
            name = f" as {label}" if label != link.voice else ""
            evidence = f"; {evidence_line(link)}" if link.evidence else ""
            lines.append(f"  {link.voice}{name} -> {target} (confidence {link.confidence:.2f}{evidence})")
    if run.answer is not None:
        lines.append(f"answer  Q: {run.answer.question}")
        lines.append(f"        A: {run.answer.text}")
        diagnostics = run.answer.diagnostics
        if "attn_max_before" in diagnostics:
            lines.append(f"        alignment: AttnMax {diagnostics['attn_max_before']:.4g} -> {diagnostics['attn_max_after']:.4g}, "
                         f"AttnMean {diagnostics['attn_mean_before']:.4g} -> {diagnostics['attn_mean_after']:.4g}")
        if "heatmap" in diagnostics:
            lines.append(f"        attention of {diagnostics['heatmap']['speaker']}: {run.path / diagnostics['heatmap']['file']}")
    return "\n".join(lines)


def evidence_line(link) -> str:
    """The evidence behind a link in a few words: how the best candidates spoke while the voice did."""
    evidence = dict(link.evidence)
    candidates = evidence.pop("candidates", None)
    if not candidates:
        return f"evidence {json.dumps(evidence)}"
    parts = []
    for tid, c in list(candidates.items())[:2]:
        if c.get("speaking_share") is None:
            parts.append(f"track {tid}: not seen while it speaks alone")
            continue
        otherwise = c.get("speaking_share_otherwise")
        parts.append(f"track {tid}: speaking on {c['speaking_share']:.0%} of {c['seen_steps'] / 25:.1f} s seen"
                     + ("" if otherwise is None else f", {otherwise:.0%} while other voices speak")
                     + (f", mouth corr {c['mouth_correlation']:.2f}" if "mouth_correlation" in c else ""))
    for disagreement in evidence.get("disagreements", ()):
        parts.append(f"{disagreement['kind']} ({disagreement['meaning']})")
    parts.extend(f"not given {why}" for why in evidence.get("face_identity_not_followed", ()))
    return "; ".join(parts)


def summary_data(run: RunContents) -> dict:
    """What ``inspect --json`` prints: the summary's facts as one JSON object (times in seconds)."""
    video, names = run.video, track_names(run.links)
    data: dict = {"run": str(run.path), "video": {"path": video.path, "width": video.width, "height": video.height,
                                                  "fps": video.fps, "duration_s": video.duration_s,
                                                  "has_audio": video.has_audio},
                  "stages": {stage: {"source": entry.get("source"), "seconds": entry.get("seconds")}
                             for stage, entry in run.manifest.get("stages", {}).items() if stage != "video"},
                  "edited": [spec.file for spec in (VIDEO, *STAGE_TABLE)
                             if edited_artifact(run.path, run.manifest, spec.name)],
                  "tracks": None, "voices": None, "links": None, "answer": None}
    if run.tracks is not None:
        data["tracks"] = [{"id": tid, "kind": run.tracks.kinds[tid], "boxes": int(len(track)), "label": names.get(tid),
                           "person": run.persons[0].get(tid),
                           "start_s": round(frame_to_time(int(track.frame_index.min()), video.fps), 3),
                           "end_s": round(frame_to_time(int(track.frame_index.max()), video.fps), 3)}
                          for tid, track in ((t, run.tracks.for_track(t)) for t in run.tracks.track_ids)]
    if run.transcript is not None:
        talk = run.transcript.talk_time_s()
        data["voices"] = [{"voice": v, "talking_s": round(talk.get(v, 0.0), 3),
                           "utterances": sum(u.speaker == v for u in run.transcript.utterances)}
                          for v in run.transcript.speakers]
    if run.links is not None:
        data["links"] = [{"voice": link.voice, "label": run.links.person_label(link.voice), "track": link.track_id,
                          "tracks": list(link.track_ids), "person": link.person_id,
                          "confidence": round(link.confidence, 4), "decision": link.evidence.get("decision")}
                         for link in run.links.links]
    if run.answer is not None:
        data["answer"] = {"question": run.answer.question, "text": run.answer.text, "options": list(run.answer.options),
                          "chosen": run.answer.chosen_option}
    return data


def track_names(links: SpeakerLinks | None) -> dict[int, str]:
    """Every linked track -> the label of its person (``SpeakerLinks.person_label``: a name, or ``PERSON_xx``;
    all tracks of a person carry it)."""
    if links is None:
        return {}
    return {t: links.person_label(link.voice, t) for link in links.links for t in link.track_ids}


def draw_score_bar(image: np.ndarray, xyxy: np.ndarray, probability: float, colour) -> None:
    """A bar under a face box: filled to the face's speaking probability, with a mark at one half (the
    threshold) and the probability written beside it ("speaks 83%")."""
    x1, _, x2, y2 = (int(round(v)) for v in xyxy)
    top, bottom = y2 + 3, y2 + 9
    if bottom >= image.shape[0] or x2 - x1 < 8:
        return
    cv2.rectangle(image, (x1, top), (x2, bottom), (40, 40, 40), -1)
    cv2.rectangle(image, (x1, top), (x1 + int(round((x2 - x1) * probability)), bottom), colour, -1)
    middle = (x1 + x2) // 2
    cv2.line(image, (middle, top), (middle, bottom), (255, 255, 255), 1)
    text = f"speaks {probability:.0%}"
    (width, height), _ = cv2.getTextSize(text, FONT, 0.35, 1)
    left = x2 + 3 if x2 + 3 + width < image.shape[1] else max(x1 - 3 - width, 0)
    cv2.rectangle(image, (left - 1, bottom - height - 1), (left + width + 1, bottom + 1), (40, 40, 40), -1)
    cv2.putText(image, text, (left, bottom), FONT, 0.35, (255, 255, 255), 1, cv2.LINE_AA)


def draw_overlay(frame: np.ndarray, frame_index: int, run: RunContents, names: dict[int, str],
                 width: int | None = None) -> np.ndarray:
    """Boxes, ids, names and the subtitle drawn on an RGB frame, resized first to ``width`` pixels if given; the
    speaking faces' tags are placed first, no tag covers another, and a voice speaking from no face on screen
    gets an "off screen: NAME speaking" line at the top."""
    scale = 1.0 if width is None else width / frame.shape[1]
    out = frame.copy() if scale == 1.0 else cv2.resize(
        frame, (width, int(round(frame.shape[0] * scale))), interpolation=cv2.INTER_AREA)
    time_s = frame_to_time(frame_index, run.video.fps)
    current = run.transcript.speaking_at(time_s) if run.transcript is not None else ()
    speaking = {u.speaker: run.links.track_at(u.speaker, frame_index, run.tracks, time_s) for u in current} \
        if run.links is not None and run.tracks is not None else {}
    if run.tracks is not None:
        _draw_tracks(out, run, frame_index, names, set(speaking.values()), scale)
    off_screen = sorted({run.links.person_label(voice) for voice, track in speaking.items() if track is None})
    if off_screen:
        text = f"off screen: {', '.join(off_screen)} speaking"
        width = min(cv2.getTextSize(text, FONT, FONT_SCALE, 1)[0][0] + 12, out.shape[1] - 60)
        out[2:24, 2:2 + width] = (out[2:24, 2:2 + width].astype(np.float32) * 0.3).astype(np.uint8)
        put_text(out, text, (8, 18), colour=(255, 230, 120))
    lines = [f"{u.speaker}: {u.text}" for u in run.final_transcript.speaking_at(time_s)[:2]] \
        if run.transcript is not None else []
    if lines:
        band_top = out.shape[0] - 8 - 20 * len(lines)
        shade = out[band_top:].astype(np.float32) * 0.35
        out[band_top:] = shade.astype(np.uint8)
        for row, text in enumerate(lines):
            put_text(out, text, (8, band_top + 18 + 20 * row))
    put_text(out, format_clock(time_s), (out.shape[1] - 52, 18), colour=(0, 0, 0))
    return out


def _draw_tracks(out: np.ndarray, run: RunContents, frame_index: int, names: dict[int, str], speaking_tracks: set,
                 scale: float) -> None:
    """Each track's box, tag, score bar and landmarks on a frame; speaking tracks' tags placed first."""
    here = run.tracks.at_frame(frame_index)
    person, shared = run.persons
    scores = run.speaking_by_frame.get(frame_index, {})
    taken: list = []
    order = sorted(range(len(here)), key=lambda i: int(here.track_id[i]) not in speaking_tracks)
    for i in order:
        tid = int(here.track_id[i])
        colour, speaking = colour_of(person.get(tid, tid)), tid in speaking_tracks
        who = f"P{person[tid]}" if person.get(tid) in shared and tid not in names else ""  # a name says it
        label = " ".join(filter(None, (str(tid), who, names.get(tid)))) + (" speaking" if speaking else "")
        draw_box(out, here.xyxy[i], colour, label, thickness=4 if speaking else 2, scale=scale, taken=taken)
        if tid in scores:
            draw_score_bar(out, here.xyxy[i] * scale, scores[tid], colour)
        if here.landmarks is not None and np.isfinite(here.landmarks[i]).all():
            for x, y in here.landmarks[i] * scale:
                cv2.circle(out, (int(round(x)), int(round(y))), 2, colour, -1)


def _require_video(run: RunContents) -> None:
    if not Path(run.video.path).is_file():
        raise InputError(f"{run.video.path}: the run's video is not there (moved or deleted?); the previews need it "
                         "(socialpipe inspect --no-render prints the summary without it)")


def render_preview(run: RunContents, out_path: Path, progress: ProgressHook = quiet) -> Path:
    """An h264 mp4 of the whole video with overlays and the original audio; written atomically."""
    video, names = run.video, track_names(run.links)
    _require_video(run)
    tmp = temporary_sibling(out_path)
    command = ["ffmpeg", "-y", "-v", "error", "-f", "rawvideo", "-pix_fmt", "rgb24",
               "-s", f"{video.width}x{video.height}", "-r", f"{video.fps}", "-i", "pipe:0"]
    if video.has_audio:
        command += ["-i", local_file(video.path), "-map", "0:v", "-map", "1:a", "-c:a", "aac", "-b:a", "64k", "-shortest"]
    command += ["-c:v", "libx264", "-preset", "veryfast", "-crf", "26", "-pix_fmt", "yuv420p", "-f", "mp4", str(tmp)]
    encoder = subprocess.Popen(command, stdin=subprocess.PIPE)
    try:
        counter = Counter(progress, "preview", video.frame_count, "frame")
        for frame_index, frame in stream_frames(video):
            encoder.stdin.write(draw_overlay(frame, frame_index, run, names).tobytes())
            counter.advance(1)
        counter.finish()
        encoder.stdin.close()
        if encoder.wait() != 0:
            raise InputError(f"ffmpeg could not encode the preview {out_path}")
        os.replace(tmp, out_path)
    finally:
        if encoder.poll() is None:
            encoder.kill()
        tmp.unlink(missing_ok=True)
    return out_path


def render_contact_sheet(run: RunContents, out_path: Path, count: int = 8, columns: int = 2,
                         thumb_width: int = 480) -> Path:
    """A PNG grid of ``count`` evenly spread annotated frames."""
    names = track_names(run.links)
    _require_video(run)
    indices = uniform_frame_indices(run.video, min(count, run.video.frame_count))
    frames = read_frames(run.video, indices)
    thumb_height = int(round(run.video.height * thumb_width / run.video.width))
    thumbs = [draw_overlay(f, i, run, names, width=thumb_width) for f, i in zip(frames, indices)]
    rows = -(-len(thumbs) // columns)
    sheet = np.full((rows * thumb_height, columns * thumb_width, 3), 255, np.uint8)
    for k, thumb in enumerate(thumbs):
        r, c = divmod(k, columns)
        sheet[r * thumb_height:(r + 1) * thumb_height, c * thumb_width:(c + 1) * thumb_width] = thumb
    return write_bytes_atomic(out_path, encode_png(sheet))

"""The typed values that cross stage boundaries, validated on construction.

Each artifact saves itself as JSON (the canonical form, with a ``socialpipe`` type tag
and a format version) and loads back from it. Other file formats (MOT csv, RTTM,
WebVTT, SRT) live in :mod:`pipeline.formats`.

Time base everywhere: float seconds from the start of the video; 0-based frame indices.
"""

from __future__ import annotations

import json
import math
import re
from bisect import bisect_right
from collections.abc import Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from socialpipe.pipeline.contracts.boxes import Boxes, head_and_shoulders
from socialpipe.pipeline.contracts.errors import InputError
from socialpipe.pipeline.contracts.io import write_text_atomic
from socialpipe.pipeline.contracts.timebase import centred_frames, frame_to_time

FORMAT_VERSION = 1
TRACK_KINDS = ("face", "person")
# Boxes and times may overrun the frame or the clip by this much (rounding in
# annotation tools) before they count as outside.
BOX_TOLERANCE_PX = 1.0
TIME_TOLERANCE_S = 0.05
INSTANT_S = 1e-3  # a moment, in time questions: above pyannote.core's segment precision


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise InputError(message)


class _SavesJson:
    """Mixin: ``artifact.save(path)`` writes the canonical JSON atomically."""

    def save(self, path: str | Path) -> Path:
        return save_json(self, path)


# ----------------------------------------------------------------------------- video


@dataclass(frozen=True)
class VideoInfo(_SavesJson):
    """What the pipeline needs to know about an input video.

    Frames are addressed on a constant-rate grid: frame ``i`` is the picture shown at ``i / fps``
    seconds. For a constant frame rate video that is the ``i``-th decoded frame. A variable frame rate
    video (phones record these) keeps its decoded frames' presentation times in ``frame_times_s``
    (seconds from the first frame), and frame ``i`` of the grid is the decoded frame on screen at
    ``i / fps``: every time in every artifact is then the time the picture is really shown.
    """

    path: str
    fps: float  # the grid's rate: the video's average frame rate, frames per second
    frame_count: int  # frames on the grid
    width: int  # pixels
    height: int  # pixels
    duration_s: float
    has_audio: bool
    frame_times_s: tuple[float, ...] | None = None  # decoded frames' start times, variable frame rate only

    def __post_init__(self) -> None:
        _check(math.isfinite(self.fps) and self.fps > 0, f"video fps must be a positive number, got {self.fps}")
        _check(self.frame_count > 0, f"video must have at least one frame, got {self.frame_count}")
        _check(self.width > 0 and self.height > 0, f"video size must be positive, got {self.width}x{self.height}")
        _check(self.duration_s > 0, f"video duration must be positive, got {self.duration_s}")
        if self.frame_times_s is not None:
            times = np.asarray(self.frame_times_s, dtype=np.float64)
            _check(times.ndim == 1 and times.size > 0 and bool(np.isfinite(times).all()) and times[0] == 0
                   and bool((np.diff(times) >= 0).all()),
                   "video frame_times_s must be non-decreasing seconds starting at 0, one per decoded frame")
            object.__setattr__(self, "frame_times_s", tuple(float(t) for t in times))

    @property
    def variable_rate(self) -> bool:
        return self.frame_times_s is not None

    def decoded_frames(self, frame_indices) -> np.ndarray:
        """The decoded frame (in decoding order, as a reader counts them) shown on each grid frame."""
        indices = np.asarray(frame_indices, dtype=np.int64)
        if self.frame_times_s is None:
            return indices
        times = np.asarray(self.frame_times_s)
        shown = np.searchsorted(times, frame_to_time(indices, self.fps) + 1e-6, side="right") - 1
        return np.clip(shown, 0, len(times) - 1)

    def to_json(self) -> dict[str, Any]:
        body = {**self.__dict__}
        if body["frame_times_s"] is None:
            del body["frame_times_s"]
        else:
            body["frame_times_s"] = [round(t, 6) for t in body["frame_times_s"]]
        return {"socialpipe": "video", "version": FORMAT_VERSION, **body}

    @classmethod
    def from_json(cls, data: Mapping[str, Any], source: str = "video json") -> VideoInfo:
        body = _unwrap(data, "video", source)
        fields = ("path", "fps", "frame_count", "width", "height", "duration_s", "has_audio")
        video = _build(cls, source, **{name: body.get(name) for name in fields})
        if body.get("frame_times_s") is None:
            return video
        with _reading(source, "video", '"frame_times_s": [seconds, ...]'):
            return replace(video, frame_times_s=tuple(body["frame_times_s"]))


# ----------------------------------------------------------------------------- tracks


@dataclass(frozen=True, eq=False, kw_only=True)
class Tracks(Boxes, _SavesJson):
    """Boxes on stable track ids, one row per (track, frame) observation: a :class:`Boxes` whose
    ``track_id`` and ``frame_index`` are always present, rows sorted by (frame, track).

    ``kinds`` maps every track id to "face" or "person"; ``person_of_face`` maps a face track to the
    person track (a whole-body box) that holds it, when the people stage tied one to it; ``persons`` maps
    each face track to the person it shows (face identity: one id for one human being across shots).
    ``meta`` carries provenance and notes (for example why two track pieces were joined).
    """

    fps: float
    kinds: Mapping[int, str]
    meta: Mapping[str, Any] = field(default_factory=dict)
    person_of_face: Mapping[int, int] = field(default_factory=dict)
    persons: Mapping[int, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check(self.track_id is not None and self.frame_index is not None,
               "tracks need a track id and a frame for every box")
        super().__post_init__()
        n = len(self)
        _check(math.isfinite(self.fps) and self.fps > 0, f"tracks fps must be a positive number, got {self.fps}")
        if n == 0:
            return
        pairs = self.track_id * (int(self.frame_index.max()) + 1) + self.frame_index
        _check(len(np.unique(pairs)) == n, "a track has two boxes on the same frame; expected one per (track, frame)")
        object.__setattr__(self, "person_of_face", {int(k): int(v) for k, v in self.person_of_face.items()})
        object.__setattr__(self, "persons", {int(k): int(v) for k, v in self.persons.items()})
        missing = sorted(set(self.track_ids) - set(self.kinds))
        _check(not missing, f"tracks {missing} have no kind; expected one of {TRACK_KINDS} per track")
        wrong = {k: v for k, v in self.kinds.items() if v not in TRACK_KINDS}
        _check(not wrong, f"unknown track kinds {wrong}; expected one of {TRACK_KINDS}")

    @classmethod
    def empty(cls, fps: float, meta: Mapping[str, Any] | None = None) -> Tracks:
        return cls.from_boxes(Boxes.empty(tracked=True), fps, {}, meta)

    @classmethod
    def from_boxes(cls, boxes: Boxes, fps: float, kinds: Mapping[int, str] | None = None,
                   meta: Mapping[str, Any] | None = None, default_kind: str = "face",
                   person_of_face: Mapping[int, int] | None = None) -> Tracks:
        """Tracked boxes (track ids and frames set) as Tracks, rows sorted by (frame, track). Tracks
        missing from ``kinds`` get ``default_kind``."""
        _check(boxes.track_id is not None and boxes.frame_index is not None,
               "tracks need a track id and a frame for every box")
        order = np.lexsort((boxes.track_id, boxes.frame_index))
        boxes = boxes[order]
        all_kinds = {int(t): default_kind for t in np.unique(boxes.track_id)}
        all_kinds.update({int(k): v for k, v in (kinds or {}).items()})
        return cls(xyxy=boxes.xyxy, confidence=boxes.confidence, landmarks=boxes.landmarks,
                   track_id=boxes.track_id, frame_index=boxes.frame_index, fps=float(fps), kinds=all_kinds,
                   meta=dict(meta or {}), person_of_face=dict(person_of_face or {}))

    @classmethod
    def from_rows(
        cls,
        rows: Sequence[Mapping[str, Any]],
        fps: float,
        kinds: Mapping[int, str] | None = None,
        meta: Mapping[str, Any] | None = None,
        default_kind: str = "face",
        person_of_face: Mapping[int, int] | None = None,
    ) -> Tracks:
        """Build from dict rows with keys track_id, frame_index, xyxy, optional confidence and landmarks
        (readers of files and test builders)."""
        n = len(rows)
        landmarks = None
        if any(r.get("landmarks") is not None for r in rows):
            landmarks = np.full((n, 5, 2), np.nan)
            for i, row in enumerate(rows):
                if row.get("landmarks") is not None:
                    landmarks[i] = np.asarray(row["landmarks"], dtype=np.float64).reshape(5, 2)
        boxes = Boxes(xyxy=np.array([r["xyxy"] for r in rows], dtype=np.float64).reshape(n, 4),
                      confidence=np.array([float(r.get("confidence", 1.0)) for r in rows], dtype=np.float64),
                      landmarks=landmarks, track_id=np.array([_integer(r["track_id"], "track_id") for r in rows]),
                      frame_index=np.array([_integer(r["frame_index"], "frame") for r in rows]))
        return cls.from_boxes(boxes, fps, kinds, meta, default_kind, person_of_face)

    def __getitem__(self, index) -> Tracks:
        """Rows selected by a boolean mask or index array, as a new Tracks."""
        rows = super().__getitem__(index)
        ids = set(int(t) for t in rows.track_id)
        return Tracks(xyxy=rows.xyxy, confidence=rows.confidence, landmarks=rows.landmarks, track_id=rows.track_id,
                      frame_index=rows.frame_index, fps=self.fps,
                      kinds={k: v for k, v in self.kinds.items() if k in ids}, meta=self.meta,
                      person_of_face={k: v for k, v in self.person_of_face.items() if k in ids},
                      persons={k: v for k, v in self.persons.items() if k in ids})

    @property
    def time_s(self) -> np.ndarray:
        """(n,) start time in seconds of each observation's frame."""
        return frame_to_time(self.frame_index, self.fps) if len(self) else np.zeros(0)

    @property
    def track_ids(self) -> list[int]:
        return [int(t) for t in np.unique(self.track_id)]

    def at_frame(self, frame_index: int) -> Tracks:
        return self[self.frame_index == frame_index]

    def for_track(self, track_id: int) -> Tracks:
        return self[self.track_id == track_id]

    def speaker_box(self, track_id: int, frame_index: int, width: int, height: int,
                    expand: float) -> np.ndarray | None:
        """The speaker box (x1, y1, x2, y2) of a track on one frame, or None when the track is not there:
        the person box that holds the face when the people stage tied one to it (``person_of_face``),
        else the face box grown to head and shoulders (``expand``), clipped to the frame."""
        person = self.person_of_face.get(track_id)
        if person is not None:
            rows = np.flatnonzero((self.track_id == person) & (self.frame_index == frame_index))
            if rows.size:
                return self.xyxy[rows[0]].copy()
        rows = np.flatnonzero((self.track_id == track_id) & (self.frame_index == frame_index))
        if rows.size == 0:
            return None
        if self.kinds.get(track_id) == "person":
            return self.xyxy[rows[0]].copy()
        return head_and_shoulders(self.xyxy[rows[0]], expand, width, height)[0]

    def validate_against(self, video: VideoInfo) -> None:
        """Raise InputError unless the frame rate is the video's, every box lies inside the frame and every
        frame exists."""
        _check(abs(self.fps - video.fps) <= 1e-3 * video.fps,
               f"tracks are at {self.fps:g} fps but the video is at {video.fps:g} fps; expected the video's frame rate "
               "(frame numbers would land at other times)")
        if len(self) == 0:
            return
        last = int(self.frame_index.max())
        _check(last < video.frame_count, f"tracks reach frame {last} but the video has frames 0..{video.frame_count - 1}")
        tol = BOX_TOLERANCE_PX
        outside = np.flatnonzero(
            (self.xyxy[:, 0] < -tol) | (self.xyxy[:, 1] < -tol)
            | (self.xyxy[:, 2] > video.width + tol) | (self.xyxy[:, 3] > video.height + tol)
        )
        _check(outside.size == 0,
               self.describe(outside, f"lies outside the {video.width}x{video.height} frame; expected boxes inside it")
               if outside.size else "")

    def to_json(self) -> dict[str, Any]:
        tracks = []
        for tid in self.track_ids:
            rows = np.flatnonzero(self.track_id == tid)
            observations = []
            for i in rows:
                obs = {
                    "frame": int(self.frame_index[i]),
                    "time_s": round(float(frame_to_time(self.frame_index[i], self.fps)), 6),
                    "xyxy": [round(float(v), 3) for v in self.xyxy[i]],
                    "confidence": round(float(self.confidence[i]), 6),
                }
                if self.landmarks is not None and np.isfinite(self.landmarks[i]).all():
                    obs["landmarks"] = [[round(float(x), 3), round(float(y), 3)] for x, y in self.landmarks[i]]
                observations.append(obs)
            tracks.append({"track_id": tid, "kind": self.kinds[tid], "observations": observations})
        body = {"socialpipe": "tracks", "version": FORMAT_VERSION, "fps": self.fps, "meta": dict(self.meta)}
        if self.person_of_face:
            body["person_of_face"] = {str(k): v for k, v in sorted(self.person_of_face.items())}
        if self.persons:
            body["persons"] = {str(k): v for k, v in sorted(self.persons.items())}
        return {**body, "tracks": tracks}

    @classmethod
    def from_json(cls, data: Mapping[str, Any], source: str = "tracks json") -> Tracks:
        body = _unwrap(data, "tracks", source)
        with _reading(source, "tracks", '{"fps": F, "tracks": [{"track_id": N, "kind": "face", '
                                        '"observations": [{"frame": N, "xyxy": [x1, y1, x2, y2]}]}]}'):
            rows, kinds = [], {}
            for track in body["tracks"]:
                tid = _integer(track["track_id"], "track_id")
                kinds[tid] = track.get("kind", "face")
                for obs in track["observations"]:
                    rows.append({"track_id": tid, "frame_index": obs["frame"], "xyxy": obs["xyxy"],
                                 "confidence": obs.get("confidence", 1.0), "landmarks": obs.get("landmarks")})
            meta = dict(body.get("meta") or {})
            tied = body.get("person_of_face", meta.pop("person_of_face", {}))  # older files kept it in meta
            person_of_face = {_key(k, "person_of_face track id"): _integer(v, "person_of_face person track")
                              for k, v in tied.items()}
            tracks = cls.from_rows(rows, fps=float(body["fps"]), kinds=kinds, meta=meta, person_of_face=person_of_face)
            persons = {_key(k, "persons track id"): _integer(v, "person id") for k, v in (body.get("persons") or {}).items()}
            return replace(tracks, persons=persons) if persons else tracks


def _text(value: Any, what: str) -> str:
    """A string from a file; null, numbers and lists are errors, not converted."""
    if not isinstance(value, str):
        raise InputError(f"{what} is {json.dumps(value)[:40]}; expected a string")
    return value


def _number(value: Any, what: str) -> float:
    """A number from a file; strings and booleans are errors, not converted."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InputError(f"{what} is {json.dumps(value)[:40]}; expected a number")
    return float(value)


def _integer(value: Any, what: str) -> int:
    """An integer id or frame number; floats with a fraction and booleans are errors, not rounded."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) and not (
            isinstance(value, float) and value.is_integer()):
        raise InputError(f"{what} is {json.dumps(value)[:40]}; expected an integer")
    return int(value)


def _key(value: Any, what: str) -> int:
    """An integer id written as a JSON object key ("12")."""
    try:
        return int(str(value))
    except ValueError:
        raise InputError(f"{what} is {json.dumps(value)[:40]}; expected an integer") from None


# ----------------------------------------------------------------------------- transcript


@dataclass(frozen=True)
class Word:
    start_s: float
    end_s: float
    text: str
    score: float | None = None  # recogniser confidence in [0, 1] when known

    def __post_init__(self) -> None:
        _check_span(self.start_s, self.end_s, f"word {self.text!r}")


@dataclass(frozen=True)
class SpeakerTurn:
    """Who speaks when, without words: a voice label (such as "SPEAKER_01", or a name) and a span."""

    start_s: float
    end_s: float
    speaker: str

    def __post_init__(self) -> None:
        _check_span(self.start_s, self.end_s, f"utterance of {self.speaker!r}")
        _check(isinstance(self.speaker, str) and self.speaker.strip() != "",
               f"utterance at {self.start_s:.2f}s has an empty speaker label; expected a voice label or name")

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s


@dataclass(frozen=True)
class Utterance(SpeakerTurn):
    """One speaker turn with its words: who (a voice label or a name) said what, when."""

    text: str = ""
    words: tuple[Word, ...] | None = None


def _annotation(turns: Sequence[SpeakerTurn], uri: str):
    """Turns as a ``pyannote.core.Annotation``, each track named by the turn's index (empty turns left out)."""
    from pyannote.core import Annotation, Segment

    annotation = Annotation(uri=uri)
    for i, u in enumerate(turns):
        if u.end_s > u.start_s:
            annotation[Segment(u.start_s, u.end_s), i] = u.speaker
    return annotation


def _check_span(start_s: float, end_s: float, what: str) -> None:
    _check(all(isinstance(v, (int, float)) and math.isfinite(v) for v in (start_s, end_s)),
           f"{what} has non-numeric times ({start_s!r}, {end_s!r}); expected seconds")
    _check(start_s >= 0, f"{what} starts at {start_s}s; expected times >= 0")
    _check(end_s >= start_s, f"{what} ends ({end_s}s) before it starts ({start_s}s); expected end >= start")


@dataclass(frozen=True)
class Transcript(_SavesJson):
    """Utterances in time order (overlapping speech allowed), and optionally the speaker activity they
    came from.

    ``speaker_turns`` is who speaks when as the diarization heard it, overlaps and speech without
    recognised words included (text empty). When present it is the speech activity: the RTTM export,
    diarization scoring, talk time and the link stage's speaking activity use it; the utterances keep
    the words, each utterance one voice. A transcript without it (read from RTTM, subtitles, a
    dataset) uses its utterances as its activity.
    """

    utterances: tuple[Utterance, ...] = ()
    meta: Mapping[str, Any] = field(default_factory=dict)
    speaker_turns: tuple[SpeakerTurn, ...] = ()

    def __post_init__(self) -> None:
        for name in ("utterances", "speaker_turns"):
            starts = [u.start_s for u in getattr(self, name)]
            _check(starts == sorted(starts), f"{name} must be sorted by start time; use Transcript.from_utterances")

    @classmethod
    def from_utterances(cls, utterances: Sequence[Utterance], meta: Mapping[str, Any] | None = None,
                        speaker_turns: Sequence[SpeakerTurn] = ()) -> Transcript:
        def order(items):
            return tuple(sorted(items, key=lambda u: (u.start_s, u.end_s, u.speaker)))

        turns = [SpeakerTurn(t.start_s, t.end_s, t.speaker) for t in speaker_turns]  # text-less, whatever was given
        return cls(order(utterances), dict(meta or {}), order(turns))

    def __len__(self) -> int:
        return len(self.utterances)

    @property
    def speakers(self) -> list[str]:
        """Voice labels in order of first appearance (in the utterances, then voices heard without words)."""
        return list(dict.fromkeys([u.speaker for u in self.utterances] + [t.speaker for t in self.speech_turns]))

    @property
    def speech_turns(self) -> tuple[SpeakerTurn, ...]:
        """Who speaks when: the speaker turns when the transcript has them, else the utterances."""
        return self.speaker_turns or self.utterances

    @property
    def end_s(self) -> float:
        return max((u.end_s for u in (*self.utterances, *self.speaker_turns)), default=0.0)

    def talk_time_s(self) -> dict[str, float]:
        """Seconds each voice speaks (its own overlapping turns counted once)."""
        annotation = self.activity_annotation()
        return {str(label): float(annotation.label_duration(label)) for label in annotation.labels()}

    def to_annotation(self, uri: str = "video"):
        """The utterances as a ``pyannote.core.Annotation``; each track is named by its utterance's index."""
        return _annotation(self.utterances, uri)

    def activity_annotation(self, uri: str = "video"):
        """Who speaks when (``speech_turns``) as a ``pyannote.core.Annotation``."""
        return _annotation(self.speech_turns, uri)

    # Time questions: which utterances overlap a time or a window (pyannote.core's interval search on the
    # turns), who speaks most in a window (its argmax), and activity on a grid of frames (centre rule, in
    # timebase: pyannote's discretize also counts a frame whose centre lies just past a turn's end).

    @cached_property
    def _turns(self):
        return self.to_annotation()

    def during(self, start_s: float, end_s: float) -> tuple[Utterance, ...]:
        """The utterances that overlap [start_s, end_s] (touching counts), in time order."""
        return tuple(u for u in self._near(start_s, end_s) if u.start_s <= end_s and u.end_s >= start_s)

    def speaking_at(self, time_s: float) -> tuple[Utterance, ...]:
        """The utterances being spoken at ``time_s`` (start <= time < end)."""
        return tuple(u for u in self._near(time_s, time_s) if u.start_s <= time_s < u.end_s)

    def _near(self, start_s: float, end_s: float) -> list[Utterance]:
        """The utterances whose turns pyannote finds overlapping [start_s, end_s] widened by INSTANT_S each side
        (pyannote treats shorter segments as empty); callers keep the exact ones."""
        from pyannote.core import Segment

        cropped = self._turns.crop(Segment(start_s - INSTANT_S, end_s + INSTANT_S), mode="loose")
        return [self.utterances[i] for i in sorted(track for _, track in cropped.itertracks())]

    def activity(self, frame_s: float, frame_count: int) -> tuple[list[str], np.ndarray]:
        """(voices, (n_voices, frame_count) 0/1): whether each voice speaks at the centre of each of
        ``frame_count`` frames of ``frame_s`` seconds from time 0."""
        voices = self.speakers
        row = {voice: i for i, voice in enumerate(voices)}
        active = np.zeros((len(voices), frame_count))
        for u in self.speech_turns:
            active[row[u.speaker], centred_frames(u.start_s, u.end_s, frame_s, frame_count)] = 1.0
        return voices, active

    def utterance_activity(self, frame_s: float, frame_count: int) -> np.ndarray:
        """(n_utterances, frame_count) 0/1: whether the centre of each frame falls inside each utterance."""
        inside = np.zeros((len(self.utterances), frame_count))
        for i, u in enumerate(self.utterances):
            inside[i, centred_frames(u.start_s, u.end_s, frame_s, frame_count)] = 1.0
        return inside

    def voice_over(self, start_s: float, end_s: float) -> str | None:
        """The voice that speaks longest within [start_s, end_s], or None when nobody does."""
        from pyannote.core import Segment

        return self._turns.argmax(Segment(start_s, max(end_s, start_s + INSTANT_S)))

    def validate_against(self, video: VideoInfo) -> None:
        late = [u for u in (*self.utterances, *self.speaker_turns) if u.end_s > video.duration_s + TIME_TOLERANCE_S]
        _check(not late, f"utterance of {late[0].speaker!r} ends at {late[0].end_s:.2f}s but the video lasts "
                         f"{video.duration_s:.2f}s; expected times inside the video" if late else "")

    def to_json(self) -> dict[str, Any]:
        utterances = []
        for u in self.utterances:
            item: dict[str, Any] = {"start_s": u.start_s, "end_s": u.end_s, "speaker": u.speaker, "text": u.text}
            if u.words is not None:
                item["words"] = [{"start_s": w.start_s, "end_s": w.end_s, "text": w.text,
                                  **({"score": w.score} if w.score is not None else {})} for w in u.words]
            utterances.append(item)
        body = {"socialpipe": "transcript", "version": FORMAT_VERSION, "meta": dict(self.meta), "utterances": utterances}
        if self.speaker_turns:
            body["speaker_turns"] = [{"start_s": t.start_s, "end_s": t.end_s, "speaker": t.speaker}
                                     for t in self.speaker_turns]
        return body

    @classmethod
    def from_json(cls, data: Mapping[str, Any], source: str = "transcript json") -> Transcript:
        body = _unwrap(data, "transcript", source)
        with _reading(source, "transcript",
                      '{"utterances": [{"start_s": S, "end_s": S, "speaker": "name", "text": "..."}]}'):
            utterances = []
            for n, item in enumerate(body["utterances"]):
                where = f"utterance {n}: "
                words = item.get("words")
                if words is not None:
                    words = tuple(Word(_number(w["start_s"], where + "word start_s"), _number(w["end_s"], where + "word end_s"),
                                       _text(w["text"], where + "word text"),
                                       None if w.get("score") is None else _number(w["score"], where + "word score"))
                                  for w in words)
                utterances.append(Utterance(_number(item["start_s"], where + "start_s"),
                                            _number(item["end_s"], where + "end_s"),
                                            _text(item["speaker"], where + "speaker"),
                                            _text(item.get("text", ""), where + "text"), words))
            turns = [SpeakerTurn(_number(item["start_s"], f"speaker turn {n}: start_s"),
                               _number(item["end_s"], f"speaker turn {n}: end_s"),
                               _text(item["speaker"], f"speaker turn {n}: speaker"))
                     for n, item in enumerate(body.get("speaker_turns") or [])]
            return cls.from_utterances(utterances, body.get("meta", {}), turns)


# ----------------------------------------------------------------------------- links


@dataclass(frozen=True)
class SpeakerLink:
    """One voice tied to the on-screen tracks of the person who speaks it, or left unlinked (``track_id``
    None: off screen). ``track_ids`` are all that person's tracks (several shots, or pieces split by a
    gap); ``track_id`` is the main one (most speaking), always among them."""

    voice: str
    track_id: int | None
    confidence: float = 1.0
    display_name: str | None = None  # a name to show instead of the voice label
    evidence: Mapping[str, Any] = field(default_factory=dict)
    track_ids: tuple[int, ...] = ()
    person_id: int | None = None

    def __post_init__(self) -> None:
        _check(isinstance(self.voice, str) and self.voice.strip() != "", "a link has an empty voice label")
        _check(self.track_id is None or isinstance(self.track_id, int),
               f"link of {self.voice!r} has track {self.track_id!r}; expected an integer track id or null")
        ids = tuple(self.track_ids)
        _check(all(isinstance(t, int) for t in ids),
               f"link of {self.voice!r} has tracks {list(ids)}; expected a list of integer track ids")
        if self.track_id is not None and self.track_id not in ids:
            ids = (self.track_id, *ids)
        _check(self.track_id is not None or not ids,
               f"link of {self.voice!r} lists tracks {list(ids)} but no main track; expected track_id among them")
        object.__setattr__(self, "track_ids", ids)
        _check(0.0 <= self.confidence <= 1.0, f"link of {self.voice!r} has confidence {self.confidence}; expected [0, 1]")

    @property
    def name(self) -> str:
        return self.display_name or self.voice


@dataclass(frozen=True)
class AttributedSegment:
    """A stretch of an utterance spoken from one track (when one voice speaks from two faces)."""

    start_s: float
    end_s: float
    track_id: int


@dataclass(frozen=True)
class UtteranceAttribution:
    """The track an utterance is attributed to (None: none of its voice's tracks is seen during it), its mean
    speaking score there, and, when its voice's faces were seen together, the stretch each of them spoke."""

    start_s: float
    end_s: float
    voice: str
    track_id: int | None
    score: float | None = None
    segments: tuple[AttributedSegment, ...] = ()

    def track_at(self, time_s: float) -> int | None:
        """The track speaking at ``time_s``: the segment's when segments were found, else the utterance's."""
        return next((part.track_id for part in self.segments if part.start_s <= time_s < part.end_s), self.track_id)

    def to_json(self) -> dict[str, Any]:
        body = {"start_s": self.start_s, "end_s": self.end_s, "voice": self.voice, "track_id": self.track_id,
                "score": self.score}
        if self.segments:
            body["segments"] = [{"start_s": s.start_s, "end_s": s.end_s, "track_id": s.track_id} for s in self.segments]
        return body

    @classmethod
    def from_json(cls, item: Mapping[str, Any]) -> UtteranceAttribution:
        track = item.get("track_id")
        return cls(_number(item["start_s"], "attribution start_s"), _number(item["end_s"], "attribution end_s"),
                   _text(item["voice"], "attribution voice"), None if track is None else _integer(track, "track_id"),
                   None if item.get("score") is None else _number(item["score"], "attribution score"),
                   tuple(AttributedSegment(_number(s["start_s"], "segment start_s"), _number(s["end_s"], "segment end_s"),
                                           _integer(s["track_id"], "segment track_id"))
                         for s in item.get("segments") or ()))


@dataclass(frozen=True)
class SpeakerLinks(_SavesJson):
    """Each voice's link, and what the link stage found on the way: the track each utterance is attributed to
    (``attributions``), the person each face track belongs to (``person_of_track``), and per face track its
    speaking probabilities ``(frame, probability)`` at 25 fps (``speaking_scores``). ``meta`` is provenance."""

    links: tuple[SpeakerLink, ...] = ()
    meta: Mapping[str, Any] = field(default_factory=dict)
    attributions: tuple[UtteranceAttribution, ...] = ()
    person_of_track: Mapping[int, int] = field(default_factory=dict)
    speaking_scores: Mapping[int, tuple[tuple[int, float], ...]] = field(default_factory=dict)
    person_names: Mapping[int, str] = field(default_factory=dict)  # person id -> a name given to that person

    def __post_init__(self) -> None:
        object.__setattr__(self, "person_names", {int(k): str(v) for k, v in self.person_names.items()})
        voices = [link.voice for link in self.links]
        dupes = sorted({v for v in voices if voices.count(v) > 1})
        _check(not dupes, f"voices {dupes} are linked more than once; expected one link per voice")
        object.__setattr__(self, "attributions", tuple(self.attributions))
        object.__setattr__(self, "person_of_track", {int(k): int(v) for k, v in self.person_of_track.items()})
        object.__setattr__(self, "speaking_scores", {int(k): tuple((int(f), float(p)) for f, p in pairs)
                                                     for k, pairs in self.speaking_scores.items()})

    def __len__(self) -> int:
        return len(self.links)

    def track_for(self, voice: str) -> int | None:
        """The voice's main track (None: off screen or not linked)."""
        return next((link.track_id for link in self.links if link.voice == voice), None)

    def tracks_for(self, voice: str) -> tuple[int, ...]:
        """Every track of the person who speaks ``voice``."""
        return next((link.track_ids for link in self.links if link.voice == voice), ())

    def track_at(self, voice: str, frame_index: int, tracks: Tracks, time_s: float | None = None) -> int | None:
        """The voice's track seen on ``frame_index``: the one its utterance at ``time_s`` is attributed to when
        that one is seen, else the main track, else any of its tracks seen then; None when none is seen."""
        ids = self.tracks_for(voice)
        if not ids:
            return None
        seen = {int(t) for t in tracks.track_id[tracks.frame_index == frame_index]}
        attributed = None
        if time_s is not None:
            utterance = next((u for u in self.attributions if u.voice == voice and u.start_s <= time_s < u.end_s), None)
            attributed = None if utterance is None else utterance.track_at(time_s)
        for candidate in (attributed, self.track_for(voice), *ids):
            if candidate is not None and candidate in seen and candidate in ids:
                return candidate
        return None

    def name_for(self, voice: str) -> str:
        return next((link.name for link in self.links if link.voice == voice), voice)

    def person_label(self, voice: str, track_id: int | None = None) -> str:
        """Who speaks ``voice`` from ``track_id`` (default: the voice's main track), as a label: the name given to
        that person, else the name of a named voice whose main track is that person's, else ``PERSON_<id>``; a
        voice with no face (or a track without a person) keeps its own label (or name)."""
        track_id = self.track_for(voice) if track_id is None else track_id
        person = None if track_id is None else self.person_of_track.get(track_id)
        if person is None:
            return self.name_for(voice)
        if person in self.person_names:
            return self.person_names[person]
        named = next((link.display_name for link in self.links if link.display_name and link.track_id is not None
                      and self.person_of_track.get(link.track_id) == person), None)
        return named or f"PERSON_{person:02d}"

    def attribution_at(self, voice: str, time_s: float) -> UtteranceAttribution | None:
        """The attribution of ``voice``'s utterance under way at ``time_s`` (None: none)."""
        return next((a for a in self.attributions if a.voice == voice and a.start_s <= time_s < a.end_s), None)

    def spoken_by(self, voice: str, start_s: float, end_s: float) -> list[tuple[float, float, str]]:
        """``(start, end, label)`` for the stretches of ``voice``'s speech in [start_s, end_s), each labelled with
        the person speaking it (``person_label`` of the track its utterance is attributed to then: an utterance
        spoken from two faces, or across shots, changes person where the speaking face changes; else the voice's
        main track). Adjacent stretches of one label are joined; an empty span gives none."""
        if end_s <= start_s:
            return []
        mine = [a for a in self.attributions if a.voice == voice and a.end_s > start_s and a.start_s < end_s]
        edges = {start_s, end_s}
        for a in mine:
            edges.update(t for part in ((a.start_s, a.end_s), *((s.start_s, s.end_s) for s in a.segments))
                         for t in part if start_s < t < end_s)
        edges = sorted(edges)
        stretches: list[tuple[float, float, str]] = []
        for start, end in zip(edges, edges[1:]):
            middle = (start + end) / 2
            attributed = next((a for a in mine if a.start_s <= middle < a.end_s), None)
            label = self.person_label(voice, None if attributed is None else attributed.track_at(middle))
            if stretches and stretches[-1][2] == label:
                stretches[-1] = (stretches[-1][0], end, label)
            else:
                stretches.append((start, end, label))
        return stretches

    def labelled(self, transcript: Transcript) -> Transcript:
        """The transcript as every later output shows it: each utterance's speaker replaced by the person
        speaking it (``spoken_by``). An utterance that changes person is split between its words (each word
        goes to the person speaking at its middle); one without word times goes whole to the person who
        speaks most of it. The voice each utterance came from stays in the speech artifact."""
        utterances = []
        for u in transcript.utterances:
            stretches = self.spoken_by(u.speaker, u.start_s, u.end_s)
            if len(stretches) < 2 or not u.words:
                utterances.append(replace(u, speaker=self._most_of(u.speaker, u.start_s, stretches)))
                continue
            starts = [start for start, _, _ in stretches]
            groups: list[tuple[str, list[Word]]] = []
            for word in u.words:
                label = stretches[max(bisect_right(starts, (word.start_s + word.end_s) / 2) - 1, 0)][2]
                if groups and groups[-1][0] == label:
                    groups[-1][1].append(word)
                else:
                    groups.append((label, [word]))
            for k, (label, words) in enumerate(groups):
                utterances.append(Utterance(u.start_s if k == 0 else words[0].start_s,
                                            u.end_s if k == len(groups) - 1 else words[-1].end_s, label,
                                            " ".join(w.text.strip() for w in words), tuple(words)))
        return Transcript.from_utterances(utterances, {**transcript.meta, "labels": "persons (links)"})

    def label_of(self, voice: str, start_s: float, end_s: float) -> str:
        """The one label for ``voice``'s speech in [start_s, end_s): the person who speaks most of it (as
        ``labelled`` gives an utterance without word times)."""
        return self._most_of(voice, start_s, self.spoken_by(voice, start_s, end_s))

    def _most_of(self, voice: str, start_s: float, stretches: list[tuple[float, float, str]]) -> str:
        """The label of the longest stretch; with none (an empty span), the person at its moment."""
        if not stretches:
            return self.person_label(voice, getattr(self.attribution_at(voice, start_s), "track_id", None))
        return max(stretches, key=lambda s: s[1] - s[0])[2]

    def who_spoke_when(self, transcript: Transcript, uri: str = "video"):
        """Who spoke when, by person (the audio-visual diarization), as a ``pyannote.core.Annotation``: each
        speech turn of ``transcript`` split and labelled by ``spoken_by``; a voice no face speaks keeps its own
        label (off screen). Two voices of one person become one label; adjacent turns of one label are joined."""
        from pyannote.core import Annotation, Segment

        annotation = Annotation(uri=uri)
        for i, turn in enumerate(transcript.speech_turns):
            for k, (start, end, label) in enumerate(self.spoken_by(turn.speaker, turn.start_s, turn.end_s)):
                annotation[Segment(start, end), (i, k)] = label
        return annotation.support()

    def named(self, names: Mapping[str, str]) -> SpeakerLinks:
        """These links with names given (``run --name LABEL=NAME``): a label that is a voice names that voice
        (its display name, shown wherever the voice is), ``PERSON_<id>`` names that person (every label of the
        person, whichever voice it speaks). A label that is neither is an InputError listing the labels."""
        voices = {link.voice for link in self.links}
        persons = set(self.person_of_track.values())
        by_voice, by_person = {}, dict(self.person_names)
        for label, name in names.items():
            name = str(name).strip()
            person = re.fullmatch(r"PERSON_0*(\d+)", str(label))
            if not name:
                raise InputError(f"--name {label}=: the name is empty; expected LABEL=NAME")
            if label in voices:
                by_voice[label] = name
            elif person and int(person.group(1)) in persons:
                by_person[int(person.group(1))] = name
            else:
                known = sorted(voices) + [f"PERSON_{p:02d}" for p in sorted(persons)]
                raise InputError(f"--name {label}={name}: {label!r} is neither a voice nor a person of this run; "
                                 f"expected one of {known[:12]}")
        links = tuple(replace(link, display_name=by_voice.get(link.voice, link.display_name)) for link in self.links)
        return replace(self, links=links, person_names=by_person)

    def with_unlisted_off_screen(self, transcript: Transcript) -> SpeakerLinks:
        """These links plus an off-screen link (track null) for every voice of the transcript they do not name."""
        listed = {link.voice for link in self.links}
        extra = tuple(SpeakerLink(voice, None, evidence={"decision": "unlisted in the given links: off screen"})
                      for voice in transcript.speakers if voice not in listed)
        return replace(self, links=self.links + extra)

    def validate_against(self, tracks: Tracks, transcript: Transcript) -> None:
        known_tracks = set(tracks.track_ids)
        bad = [(link, t) for link in self.links for t in link.track_ids if t not in known_tracks]
        _check(not bad, f"voice {bad[0][0].voice!r} is linked to track {bad[0][1]}, which does not exist; "
                        f"expected one of the tracks {sorted(known_tracks)} or null" if bad else "")
        voices = set(transcript.speakers)
        unknown = [link.voice for link in self.links if link.voice not in voices]
        _check(not unknown, f"links name voice {unknown[0]!r}, which the transcript does not have; "
                            f"expected one of {sorted(voices)}" if unknown else "")
        unlisted = sorted(voices - {link.voice for link in self.links})
        _check(not unlisted, f"the transcript's voices {unlisted[:5]} have no link; expected a link (a track id, or "
                             "null for off screen) for every voice, or --unlisted-off-screen" if unlisted else "")

    def to_json(self) -> dict[str, Any]:
        body = {
            "socialpipe": "links", "version": FORMAT_VERSION, "meta": dict(self.meta),
            "links": [{"voice": link.voice, "track_id": link.track_id, "track_ids": list(link.track_ids),
                       "person_id": link.person_id, "confidence": link.confidence,
                       "display_name": link.display_name, "evidence": dict(link.evidence)} for link in self.links],
        }
        if self.attributions:
            body["utterances"] = [u.to_json() for u in self.attributions]
        if self.person_of_track:
            body["person_of_track"] = {str(t): p for t, p in sorted(self.person_of_track.items())}
        if self.person_names:
            body["person_names"] = {str(p): name for p, name in sorted(self.person_names.items())}
        if self.speaking_scores:
            body["speaking_scores"] = {str(t): [[f, p] for f, p in pairs] for t, pairs in self.speaking_scores.items()}
        return body

    @classmethod
    def from_json(cls, data: Mapping[str, Any], source: str = "links json") -> SpeakerLinks:
        """Read the canonical form, or a plain mapping ``{"voice": track_id_or_null}``."""
        expected = '{"links": [{"voice": "name", "track_id": N or null}]} or {"name": N or null}'
        if isinstance(data, Mapping) and "socialpipe" not in data and "links" not in data:
            with _reading(source, "links", expected):
                return cls(tuple(SpeakerLink(str(voice), None if tid is None else _integer(tid, f"track of {voice!r}"))
                                 for voice, tid in data.items()), {})
        body = _unwrap(data, "links", source)
        with _reading(source, "links", expected):
            links = [SpeakerLink(_text(item["voice"], "voice"),
                                 None if item.get("track_id") is None else _integer(item["track_id"], "track_id"),
                                 _number(item.get("confidence", 1.0), "confidence"),
                                 None if item.get("display_name") is None else _text(item["display_name"], "display_name"),
                                 dict(item.get("evidence") or {}),
                                 tuple(_integer(t, "track_ids") for t in item.get("track_ids") or ()),
                                 None if item.get("person_id") is None else _integer(item["person_id"], "person_id"))
                     for item in body["links"]]
            meta = dict(body.get("meta") or {})
            found = {key: body.get(key, meta.pop(key, None)) for key in  # older files kept these in meta
                     ("utterances", "person_of_track", "speaking_scores")}
            return cls(tuple(links), meta, tuple(UtteranceAttribution.from_json(u) for u in found["utterances"] or ()),
                       {_key(t, "person_of_track track id"): _integer(p, "person id")
                        for t, p in (found["person_of_track"] or {}).items()},
                       {_key(t, "speaking_scores track id"): tuple((_integer(f, "frame"), _number(p, "speaking probability"))
                                                           for f, p in pairs)
                        for t, pairs in (found["speaking_scores"] or {}).items()},
                       {_key(p, "person_names person id"): _text(name, "person name")
                        for p, name in (body.get("person_names") or {}).items()})


@dataclass(frozen=True)
class Names(_SavesJson):
    """Names given in a run (``run --name``, ``--names``, ``--gallery``), kept as ``names.json`` beside
    ``links.json``: label (a voice such as ``SPEAKER_00``, or a person ``PERSON_<id>``) -> name, and for each
    gallery entry how it was matched (``matches``: the name, what it matched or why not, the similarity and the
    threshold)."""

    names: Mapping[str, str] = field(default_factory=dict)
    matches: tuple[Mapping[str, Any], ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"socialpipe": "names", "version": FORMAT_VERSION, "names": dict(self.names),
                "matches": [dict(m) for m in self.matches]}

    @classmethod
    def from_json(cls, data: Mapping[str, Any], source: str = "names json") -> Names:
        body = _unwrap(data, "names", source)
        with _reading(source, "names", '{"names": {"SPEAKER_00": "Alice", "PERSON_02": "Bob"}}'):
            names = body["names"]
            _check(isinstance(names, Mapping), "names is not a mapping; expected {label: name}")
            return cls({_text(label, "label"): _text(name, f"name of {label}") for label, name in names.items()},
                       tuple(dict(m) for m in body.get("matches") or ()))


# ----------------------------------------------------------------------------- answer


@dataclass(frozen=True)
class Answer(_SavesJson):
    """The answer stage's result for one question."""

    question: str
    text: str
    options: tuple[str, ...] = ()
    chosen_option: int | None = None  # index into options for multiple choice
    option_scores: tuple[float, ...] | None = None  # one score per option (e.g. log-likelihood)
    model: str | None = None
    diagnostics: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check(isinstance(self.question, str) and self.question.strip() != "",
               "the question is empty; expected a question such as --question 'Who is Alice talking to?'")
        if self.chosen_option is not None:
            _check(0 <= self.chosen_option < len(self.options),
                   f"chosen option {self.chosen_option} is not one of the {len(self.options)} options")
        if self.option_scores is not None:
            _check(len(self.option_scores) == len(self.options),
                   f"{len(self.option_scores)} option scores for {len(self.options)} options; expected one each")

    def to_json(self) -> dict[str, Any]:
        return {"socialpipe": "answer", "version": FORMAT_VERSION, "question": self.question, "text": self.text,
                "options": list(self.options), "chosen_option": self.chosen_option,
                "option_scores": None if self.option_scores is None else list(self.option_scores),
                "model": self.model, "diagnostics": dict(self.diagnostics)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any], source: str = "answer json") -> Answer:
        body = _unwrap(data, "answer", source)
        with _reading(source, "answer", '{"question": "...", "text": "..."}'):
            scores = body.get("option_scores")
            return cls(str(body["question"]), str(body["text"]), tuple(body.get("options", ())),
                       body.get("chosen_option"), None if scores is None else tuple(float(s) for s in scores),
                       body.get("model"), dict(body.get("diagnostics") or {}))


# ----------------------------------------------------------------------------- JSON helpers

def save_json(artifact, path: str | Path) -> Path:
    """Write an artifact's JSON atomically (a reader never sees a half-written file)."""
    return write_text_atomic(path, dumps_readable(artifact.to_json()) + "\n")


def dumps_readable(value: Any, depth: int = 0, max_depth: int = 4) -> str:
    """JSON indented down to ``max_depth`` levels and compact below, so per-frame rows stay one line each."""
    if depth >= max_depth or not isinstance(value, (dict, list)) or not value:
        return json.dumps(value, ensure_ascii=False, separators=(", ", ": "))
    pad, inner = " " * depth, " " * (depth + 1)
    if isinstance(value, dict):
        items = [f"{inner}{json.dumps(str(k), ensure_ascii=False)}: {dumps_readable(v, depth + 1, max_depth)}"
                 for k, v in value.items()]
        return "{\n" + ",\n".join(items) + f"\n{pad}}}"
    items = [f"{inner}{dumps_readable(v, depth + 1, max_depth)}" for v in value]
    return "[\n" + ",\n".join(items) + f"\n{pad}]"


def read_json(path: str | Path) -> Any:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except (IsADirectoryError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read it as UTF-8 JSON text ({type(exc).__name__})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None
    except RecursionError:
        raise InputError(f"{path}: JSON nested too deeply to read; expected the file's documented layout") from None


def load_json(cls, path: str | Path):
    """Load an artifact of type ``cls`` from its JSON file, naming the file in any error."""
    if not hasattr(cls, "from_json"):
        kinds = ", ".join(t.__name__ for t in (VideoInfo, Tracks, Transcript, SpeakerLinks, Names, Answer))
        raise InputError(f"{getattr(cls, '__name__', cls)} is not an artifact file's type; load_json reads one of "
                         f"{kinds}")
    return cls.from_json(read_json(path), source=str(path))


def _unwrap(data: Any, kind: str, source: str) -> Mapping[str, Any]:
    if not isinstance(data, Mapping):
        raise InputError(f"{source}: expected a JSON object holding a socialpipe {kind}, found {type(data).__name__}")
    found = data.get("socialpipe", kind)
    if found != kind:
        raise InputError(f"{source}: holds a socialpipe {found}, expected a {kind}")
    version = data.get("version", FORMAT_VERSION)
    if version != FORMAT_VERSION:
        raise InputError(f"{source}: format version {version}; this socialpipe reads version {FORMAT_VERSION}")
    return data


def _build(cls, source: str, **kwargs):
    missing = [k for k, v in kwargs.items() if v is None]
    if missing:
        raise InputError(f"{source}: missing fields {missing}")
    with _reading(source, cls.__name__, ""):
        return cls(**kwargs)


@contextmanager
def _reading(source: str, what: str, expected: str):
    """Turn any failure while building an artifact from parsed JSON into one InputError naming the file."""
    try:
        yield
    except InputError as exc:
        raise InputError(f"{source}: {exc}") from None
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        hint = f"; expected {expected}" if expected else ""
        raise InputError(f"{source}: malformed {what} ({_describe(exc)}){hint}") from None


def _describe(exc: Exception) -> str:
    if isinstance(exc, KeyError):
        return f"missing field {exc.args[0]!r}"
    return str(exc)

"""File formats other tools read and write, beside the canonical JSON.

- Tracks <-> MOT-challenge csv: ``frame,id,bb_left,bb_top,bb_width,bb_height,conf,x,y,z``
  with 1-based frames and 0-based pixels, read by motmetrics. MOT has no track kind nor landmarks: they are not written, and
  tracks read from MOT get the kind the caller names.
- Transcript <-> RTTM (who speaks when, overlaps included: the speaker turns when the transcript has
  them, else its utterances; no text), written by ``pyannote.core`` and read by
  ``pyannote.database``. RTTM fields are space-separated, so a label's spaces are written as
  underscores.
- Transcript <-> WebVTT, one cue per utterance with a ``<v Speaker>`` voice span.
- Transcript <- SRT whose cue lines begin with ``Name:`` or ``(Name:)`` (TVQA style).

``load_tracks``, ``load_transcript`` and ``load_links`` pick the format from the extension.
"""

from __future__ import annotations

import csv
import html
import io
import os
import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from socialpipe.pipeline.contracts.boxes import Boxes
from socialpipe.pipeline.contracts.artifacts import (
    SpeakerLinks,
    Tracks,
    Transcript,
    Utterance,
    Word,
    load_json,
    read_json,
)
from socialpipe.pipeline.contracts.errors import InputError
from socialpipe.pipeline.contracts.io import not_a_regular_file, temporary_sibling, text_lines, write_text_atomic

TRACK_SUFFIXES = (".json", ".csv", ".txt")
TRANSCRIPT_SUFFIXES = (".json", ".rttm", ".vtt", ".srt")
LINK_SUFFIXES = (".json",)


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except (IsADirectoryError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read it as UTF-8 text ({type(exc).__name__})") from None


def _suffix(path: Path, allowed: tuple[str, ...], what: str) -> str:
    suffix = path.suffix.lower()
    if suffix not in allowed:
        raise InputError(f"{path}: unknown {what} format {suffix or '(no extension)'!r}; expected one of {list(allowed)}")
    return suffix


# ----------------------------------------------------------------------------- MOT csv


def write_mot(tracks: Tracks, path: str | Path) -> Path:
    lines = []
    for i in range(len(tracks)):
        x1, y1, x2, y2 = (float(v) for v in tracks.xyxy[i])
        lines.append(f"{int(tracks.frame_index[i]) + 1},{int(tracks.track_id[i])},{x1:.2f},{y1:.2f},"
                     f"{x2 - x1:.2f},{y2 - y1:.2f},{float(tracks.confidence[i]):.4f},-1,-1,-1")
    return write_text_atomic(path, "".join(line + "\n" for line in lines))


def read_mot(path: str | Path, fps: float, kind: str = "face") -> Tracks:
    """Read a MOT-challenge csv with motmetrics' reader. A confidence of -1 (MOT's "unknown") reads as 1.0.

    motmetrics takes left/top as MATLAB's 1-based pixels and subtracts 1; socialpipe's MOT files hold
    0-based pixels (the same numbers as ``xyxy``), so the 1 is added back.
    """
    import motmetrics as mm
    import pandas as pd

    path = Path(path)
    lines = _data_lines(path, _read_text(path))
    expected = "'frame,id,bb_left,bb_top,bb_width,bb_height[,conf,x,y,z]' numbers, frames from 1"
    bad = next((n for n, line in lines if not _MOT_ROW.match(line)), None)
    if bad is not None:
        raise InputError(f"{path} line {bad}: {dict(lines)[bad].strip()[:60]!r} is not a MOT row; expected {expected}")
    if not lines:
        return Tracks.empty(fps, meta={"source": str(path)})
    # motmetrics drops rows without a confidence (NaN fails its confidence filter): absent means 1
    rows = [line if line.count(",") >= 6 else f"{line.rstrip().rstrip(',')},1" for _, line in lines]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pandas' deprecation notice about motmetrics' tuple arithmetic
        table = mm.io.loadtxt(io.StringIO("\n".join(rows)), fmt="mot15-2D").reset_index()
    if len(table) != len(rows):
        raise InputError(f"{path}: {len(rows) - len(table)} MOT rows could not be read; expected {expected}")
    numbers = {line_of: n for line_of, (n, _) in enumerate(lines)}
    first = np.flatnonzero(table["FrameId"].to_numpy() < 1)
    if first.size:
        raise InputError(f"{path} line {numbers[int(first[0])]}: frame {table['FrameId'][first[0]]:g}; "
                         "MOT frames count from 1")
    sizes = table[["Width", "Height"]].to_numpy()
    negative = np.flatnonzero((sizes < 0).any(axis=1))
    if negative.size:
        width, height = sizes[negative[0]]
        raise InputError(f"{path} line {numbers[int(negative[0])]}: negative box size {width:g}x{height:g}; "
                         "expected width, height >= 0")
    left, top = table["X"].to_numpy() + 1, table["Y"].to_numpy() + 1
    confidence = pd.to_numeric(table["Confidence"]).fillna(1.0).to_numpy()
    boxes = Boxes(np.stack([left, top, left + sizes[:, 0], top + sizes[:, 1]], axis=1),
                  np.where(confidence < 0, 1.0, np.minimum(confidence, 1.0)),
                  track_id=table["Id"].to_numpy(), frame_index=table["FrameId"].to_numpy() - 1)
    try:
        return Tracks.from_boxes(boxes, fps=fps, default_kind=kind, meta={"source": str(path)})
    except InputError as exc:
        raise InputError(f"{path}: {exc}") from None


_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_MOT_ROW = re.compile(rf"\s*\d+(?:\.0*)?\s*,\s*-?\d+(?:\.0*)?(?:\s*,\s*{_NUMBER}){{4,8}}\s*,?\s*$")


def _data_lines(path: Path, text: str) -> list[tuple[int, str]]:
    """(line number, line) of the lines that hold data: not blank, not a comment (``#`` or ``;;``)."""
    return [(n, line) for n, line in enumerate(text_lines(text), start=1)
            if line.strip() and not line.lstrip().startswith(("#", ";;"))]


# ----------------------------------------------------------------------------- RTTM


def rttm_label(speaker: str) -> str:
    return re.sub(r"\s+", "_", speaker.strip())


def write_rttm(transcript: Transcript, path: str | Path, uri: str = "video") -> Path:
    return write_annotation_rttm(transcript.activity_annotation(uri=uri), path)


def write_annotation_rttm(annotation, path: str | Path) -> Path:
    """A ``pyannote.core.Annotation`` as RTTM (labels and uri without spaces)."""
    annotation = annotation.rename_labels({label: rttm_label(label) for label in annotation.labels()})
    annotation.uri = rttm_label(annotation.uri or "") or "video"
    buffer = io.StringIO()
    annotation.write_rttm(buffer)
    return write_text_atomic(path, buffer.getvalue())


_RTTM_TYPE = re.compile(r"[A-Z][A-Z-]+")  # SPEAKER, SPKR-INFO, LEXEME, NON-SPEECH, ...
_RTTM_SPEAKER = re.compile(rf"SPEAKER\s+\S+\s+\S+\s+(?P<start>{_NUMBER})\s+(?P<duration>{_NUMBER})\s+\S+\s+\S+\s+\S+"
                           r"(?:\s+\S+){0,2}\s*$")


def read_rttm(path: str | Path) -> Transcript:
    """Read the SPEAKER lines of an RTTM file (pyannote.database's reader) as utterances without text;
    other line types are skipped."""
    from pyannote.database.util import load_rttm

    path = Path(path)
    lines = _data_lines(path, _read_text(path))
    expected = "'SPEAKER <file> <channel> <start> <duration> <NA> <NA> <speaker> <NA> <NA>'"
    for n, line in lines:
        kind = line.split()[0]
        match = _RTTM_SPEAKER.match(line)
        if not _RTTM_TYPE.fullmatch(kind) or kind == "SPEAKER" and match is None:
            raise InputError(f"{path} line {n}: {line.strip()[:60]!r} is not an RTTM SPEAKER line; expected {expected}")
        if match and float(match["duration"]) < 0:
            raise InputError(f"{path} line {n}: negative duration {match['duration']}; expected >= 0")
        if match and float(match["start"]) < 0:
            raise InputError(f"{path} line {n}: starts at {match['start']}s; expected times >= 0")
    speaker_lines = [line for _, line in lines if line.split()[0] == "SPEAKER"]
    turns = load_rttm(io.StringIO("\n".join(speaker_lines))) if speaker_lines else {}
    utterances = [Utterance(segment.start, segment.end, str(label)) for annotation in turns.values()
                  for segment, _, label in annotation.itertracks(yield_label=True)]
    return Transcript.from_utterances(utterances, {"source": str(path), "format": "rttm"})


# ----------------------------------------------------------------------------- WebVTT / SRT

_TIME = r"(?:(\d+):)?(\d{1,2}):(\d{2})[.,](\d{1,3})"
_TIMING = re.compile(rf"^\s*{_TIME}\s*-->\s*{_TIME}")
_VOICE = re.compile(r"<v(?:\.[^\s>]*)?\s+([^>]+)>")
_TAG = re.compile(r"</?[^>]+>")
# "Name: text" or TVQA's "(Name:) text"; a name starts with a letter and has at most four words.
_BRACKET_PREFIX = re.compile(r"^\s*\[([^\]]+)\]\s*:\s*(.*)$")  # WhisperX's SRT and TXT: "[SPEAKER_00]: text"
_NAME_PREFIX = re.compile(r"^\s*(?:-\s*)?\(?\s*([A-Za-z][\w.'&-]*(?: [\w.'&-]+){0,3})\s*:\s*\)?\s*(.*)$")


def _seconds(groups: tuple[str | None, ...]) -> float:
    hours, minutes, seconds, millis = groups
    return int(hours or 0) * 3600 + int(minutes) * 60 + int(seconds) + int(millis.ljust(3, "0")) / 1000


def _clock(time_s: float) -> str:
    millis = int(round(time_s * 1000))
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    seconds, millis = divmod(millis, 1000)
    return f"{hours:02d}:{minutes:02d}:{seconds:02d}.{millis:03d}"


def _vtt_escape(text: str) -> str:
    """Text safe inside one cue line: markup characters and line breaks as character references (a blank
    line would end the cue, a line break in a voice name would break its ``<v>`` tag)."""
    body = text.strip()
    lead, tail = text[:len(text) - len(text.lstrip())], text[len(text.rstrip()):] if body else ""
    refs = lambda spaces: "".join(f"&#{ord(c)};" for c in spaces)  # noqa: E731 (edge whitespace survives strip())
    escaped = html.escape(body, quote=False).replace("\r", "&#13;").replace("\n", "&#10;")
    return refs(lead) + escaped + refs(tail)


def write_vtt(transcript: Transcript, path: str | Path) -> Path:
    """One cue per utterance, ``<v Speaker>text</v>`` on one line; every utterance reads back as written."""
    blocks = ["WEBVTT\n"]
    for i, u in enumerate(transcript.utterances, start=1):
        blocks.append(f"{i}\n{_clock(u.start_s)} --> {_clock(u.end_s)}\n<v {_vtt_escape(u.speaker)}>"
                      f"{_vtt_escape(u.text)}</v>\n")
    return write_text_atomic(path, "\n".join(blocks))


def _cues(path: Path, text: str):
    """Yield (lineno, start_s, end_s, payload_lines) for each timed cue of a VTT or SRT file."""
    lines = text_lines(text)
    i = 0
    while i < len(lines):
        match = _TIMING.match(lines[i])
        if not match:
            if "-->" in lines[i]:
                raise InputError(f"{path} line {i + 1}: bad cue timing {lines[i].strip()!r}; "
                                 "expected 'HH:MM:SS.mmm --> HH:MM:SS.mmm'")
            i += 1
            continue
        lineno = i + 1
        start, end = _seconds(match.groups()[:4]), _seconds(match.groups()[4:])
        i += 1
        payload = []
        while i < len(lines) and lines[i].strip():
            payload.append(lines[i])
            i += 1
        yield lineno, start, end, payload


def _cue_utterances(path: Path, lineno: int, start: float, end: float, payload: list[str],
                    unnamed: str | None = None) -> list[Utterance]:
    """Split a cue's lines into utterances by voice span or ``Name:`` prefix; a cue naming nobody is an
    error, or spoken by ``unnamed`` when that is given."""
    turns: list[list[str]] = []  # [speaker, text]
    for raw in payload:
        voice = _VOICE.search(raw)
        plain = html.unescape(_TAG.sub("", raw).strip())  # escaped line breaks and edge spaces are kept
        prefix = (_BRACKET_PREFIX.match(plain.strip()) or _NAME_PREFIX.match(plain.strip())) if not voice else None
        if voice:
            turns.append([html.unescape(voice.group(1).strip()), plain])
        elif prefix:
            turns.append([prefix.group(1).strip(), prefix.group(2).strip()])
        elif turns:
            turns[-1][1] = f"{turns[-1][1]} {plain.strip()}".strip()
        elif plain.strip() and unnamed is not None:
            turns.append([unnamed, plain.strip()])
        elif plain.strip():
            raise InputError(f"{path} line {lineno}: cue {plain[:40]!r} names no speaker; expected a "
                             "'<v Name>' voice span or a line starting 'Name:' or '[Name]:'")
    try:
        return [Utterance(start, end, speaker, text) for speaker, text in turns]
    except InputError as exc:
        raise InputError(f"{path} line {lineno}: {exc}") from None


def read_vtt(path: str | Path) -> Transcript:
    path = Path(path)
    text = _read_text(path)
    if not text.lstrip().startswith("WEBVTT"):
        raise InputError(f"{path}: not a WebVTT file; expected it to begin with 'WEBVTT'")
    utterances = [u for cue in _cues(path, text) for u in _cue_utterances(path, *cue)]
    return Transcript.from_utterances(utterances, {"source": str(path), "format": "vtt"})


def read_srt(path: str | Path, unnamed: str | None = None) -> Transcript:
    """SRT cues whose lines begin ``Name:`` or ``(Name:)``; cues naming nobody are an error unless
    ``unnamed`` names who speaks them (datasets whose subtitles tag only some lines)."""
    path = Path(path)
    text = _read_text(path)
    utterances = [u for cue in _cues(path, text) for u in _cue_utterances(path, *cue, unnamed=unnamed)]
    if text.strip() and not utterances:
        raise InputError(f"{path}: no SRT cues found; expected blocks of 'N', 'HH:MM:SS,mmm --> HH:MM:SS,mmm', 'Name: text'")
    return Transcript.from_utterances(utterances, {"source": str(path), "format": "srt"})


# ----------------------------------------------------------------------------- dispatch


def load_tracks(path: str | Path, fps: float | None, kind: str = "face") -> Tracks:
    """Tracks from JSON, or from MOT csv (``.csv``/``.txt``, which needs the video's ``fps``)."""
    path = Path(path)
    if _suffix(path, TRACK_SUFFIXES, "tracks") == ".json":
        return load_json(Tracks, path)
    if fps is None:
        raise InputError(f"{path}: a MOT csv carries no frame rate; give the video's fps (score: --fps)")
    return read_mot(path, fps, kind)


def load_transcript(path: str | Path) -> Transcript:
    path = Path(path)
    readers = {".json": _read_transcript_json, ".rttm": read_rttm, ".vtt": read_vtt, ".srt": read_srt}
    return readers[_suffix(path, TRANSCRIPT_SUFFIXES, "transcript")](path)


def _read_transcript_json(path: Path) -> Transcript:
    """socialpipe's transcript JSON, or WhisperX's result JSON (segments with their speaker)."""
    data = read_json(path)
    return read_whisperx_json(data, str(path)) if is_whisperx_json(data) else Transcript.from_json(data, source=str(path))


def is_whisperx_json(data: Any) -> bool:
    return isinstance(data, dict) and "socialpipe" not in data and isinstance(data.get("segments"), list)


def read_whisperx_json(data: dict, source: str) -> Transcript:
    """WhisperX's result (``whisperx ... --output_format json`` after diarization) as a transcript: each segment
    an utterance of its ``speaker``, its words with their times where WhisperX aligned them."""
    utterances = []
    for i, segment in enumerate(data["segments"]):
        where = f"{source}: segment {i}"
        if not isinstance(segment, dict):
            raise InputError(f"{where} is {type(segment).__name__}; expected an object with start, end, text, speaker")
        speaker = segment.get("speaker")
        if not isinstance(speaker, str) or not speaker.strip():
            raise InputError(f"{where} has no speaker; expected WhisperX's output after diarization "
                             "(whisperx --diarize), whose segments name their speaker")
        start, end = segment.get("start"), segment.get("end")
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (start, end)):
            raise InputError(f"{where} has start {start!r} and end {end!r}; expected seconds")
        words = tuple(Word(float(w["start"]), float(w["end"]), str(w.get("word", "")).strip(),
                           float(w["score"]) if isinstance(w.get("score"), (int, float)) else None)
                      for w in segment.get("words") or () if isinstance(w, dict)
                      and isinstance(w.get("start"), (int, float)) and isinstance(w.get("end"), (int, float)))
        utterances.append(Utterance(float(start), float(end), speaker, str(segment.get("text", "")).strip(),
                                    words or None))
    return Transcript.from_utterances(utterances, {"source": source, "format": "whisperx json"})


def load_links(path: str | Path) -> SpeakerLinks:
    path = Path(path)
    _suffix(path, LINK_SUFFIXES, "links")
    return load_json(SpeakerLinks, path)


# ----------------------------------------------------------------------------- AVA-ActiveSpeaker csv

AVA_SPEAKING = "SPEAKING_AUDIBLE"


def read_ava_csv(path) -> list[dict]:
    """Rows of an AVA-ActiveSpeaker csv: video_id, frame_timestamp, x1, y1, x2, y2, label, entity_id[, score]."""
    rows = []
    why = not_a_regular_file(path)
    if why is not None:
        raise InputError(f"{path}: {why}; expected an AVA-ActiveSpeaker csv")
    try:
        text = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise InputError(f"{path}: not UTF-8 text; expected an AVA-ActiveSpeaker csv") from None
    for number, fields in enumerate(csv.reader(io.StringIO(text, newline="")), 1):
        if not fields or fields[0].startswith("#") or fields[0] == "video_id":
            continue
        if len(fields) < 8:
            raise InputError(f"{path}:{number}: {len(fields)} columns; expected video_id, frame_timestamp, "
                             "x1, y1, x2, y2, label, entity_id[, score] (the AVA-ActiveSpeaker csv)")
        try:
            rows.append({"key": (fields[0], round(float(fields[1]), 2), fields[7]), "label": fields[6].strip(),
                         "score": float(fields[8]) if len(fields) > 8 and fields[8].strip() else None})
        except ValueError:
            raise InputError(f"{path}:{number}: timestamp {fields[1]!r} or score is not a number; expected "
                             "seconds and a score") from None
    return rows


def write_ava_csv(links: SpeakerLinks, tracks: Tracks, path, video_id: str, width: int, height: int):
    """The link stage's speaking scores as an AVA-ActiveSpeaker prediction csv (normalised face boxes)."""
    temporary = temporary_sibling(path)
    with open(temporary, "w", newline="") as handle:
        writer = csv.writer(handle)
        for tid, pairs in links.speaking_scores.items():
            mine = tracks.for_track(tid)  # its frames ascending: rows are found by binary search
            for frame, probability in pairs:
                row = int(np.searchsorted(mine.frame_index, frame))
                if row == len(mine) or mine.frame_index[row] != frame:
                    continue
                x1, y1, x2, y2 = mine.xyxy[row]
                writer.writerow([video_id, f"{frame / tracks.fps:.2f}", f"{x1 / width:.4f}", f"{y1 / height:.4f}",
                                 f"{x2 / width:.4f}", f"{y2 / height:.4f}",
                                 AVA_SPEAKING if probability >= 0.5 else "NOT_SPEAKING", f"{video_id}:{tid}",
                                 f"{probability:.4f}"])
    os.replace(temporary, path)
    return path

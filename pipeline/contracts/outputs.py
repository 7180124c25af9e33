"""The transcript in the formats WhisperX users read (``--output-format``), with the final speaker labels
(WhisperX's JSON is read back as a ground-truth transcript by ``formats.load_transcript``).

The final label of an utterance is the person speaking it when the run has links (``SpeakerLinks.labelled``:
``PERSON_xx``, or the name of a named voice; two voices of one person share a label; an utterance that changes
person is split between its words; a voice no face speaks keeps its own), else its voice. Files are written beside the run's
artifacts as ``transcript.<format>``:

- ``srt``: numbered cues, ``HH:MM:SS,mmm --> HH:MM:SS,mmm``, ``[LABEL]: text`` (as WhisperX writes them, and as
  socialpipe reads SRT back);
- ``vtt``: WebVTT with ``<v LABEL>`` voice spans;
- ``txt``: one ``[LABEL]: text`` line per utterance;
- ``tsv``: ``start``, ``end`` (integer milliseconds, as WhisperX), ``speaker``, ``text``;
- ``json``: WhisperX's layout, ``{"segments": [{"start", "end", "text", "speaker", "words": [{"word", "start",
  "end", "score", "speaker"}]}], "word_segments": [...], "language"}``;
- ``rttm``: who spoke when by label (the audio-visual diarization with links, else the voices' turns).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from socialpipe.pipeline.contracts.artifacts import SpeakerLinks, Transcript
from socialpipe.pipeline.contracts.errors import InputError
from socialpipe.pipeline.contracts.formats import _clock, write_annotation_rttm, write_rttm, write_vtt
from socialpipe.pipeline.contracts.io import write_text_atomic

OUTPUT_FORMATS = ("srt", "vtt", "txt", "tsv", "json", "rttm")
OUTPUT_STEM = "transcript"


def labelled(transcript: Transcript, links: SpeakerLinks | None) -> Transcript:
    """The transcript with the final labels: ``SpeakerLinks.labelled`` with links, else the voices."""
    return transcript if links is None else links.labelled(transcript)


def wanted_formats(formats: tuple[str, ...]) -> tuple[str, ...]:
    """The formats ``--output-format`` asks for ("all": every one), each once; an unknown one is an InputError."""
    wanted = OUTPUT_FORMATS if "all" in formats else tuple(dict.fromkeys(formats))
    unknown = [f for f in wanted if f not in OUTPUT_FORMATS]
    if unknown:
        raise InputError(f"--output-format {unknown[0]!r}: unknown; expected one of {list(OUTPUT_FORMATS)} or all")
    return wanted


def write_outputs(transcript: Transcript | None, links: SpeakerLinks | None, folder: str | Path, formats: tuple[str, ...],
                  uri: str = "video", language: str | None = None) -> list[Path]:
    """``folder/transcript.<format>`` for each of ``formats`` ("all": every one), with the final labels."""
    wanted = wanted_formats(formats)
    if transcript is None:
        raise InputError("--output-format needs the speech stage's transcript; expected --until speech or later")
    final = labelled(transcript, links)
    folder = Path(folder)
    written = []
    for kind in wanted:
        path = folder / f"{OUTPUT_STEM}.{kind}"
        if kind == "srt":
            write_text_atomic(path, srt_text(final))
        elif kind == "vtt":
            write_vtt(final, path)
        elif kind == "txt":
            write_text_atomic(path, "".join(f"[{u.speaker}]: {u.text.strip()}\n" for u in final.utterances))
        elif kind == "tsv":
            rows = ["start\tend\tspeaker\ttext"] + [
                f"{round(u.start_s * 1000)}\t{round(u.end_s * 1000)}\t{_cell(u.speaker)}\t{_cell(u.text)}"
                for u in final.utterances]
            write_text_atomic(path, "\n".join(rows) + "\n")
        elif kind == "json":
            write_text_atomic(path, json.dumps(whisperx_json(final, language), ensure_ascii=False, indent=1) + "\n")
        elif links is not None:
            write_annotation_rttm(links.who_spoke_when(transcript, uri=uri), path)
        else:
            write_rttm(transcript, path, uri=uri)
        written.append(path)
    return written


def _cell(text: str) -> str:
    return " ".join(text.replace("\t", " ").split())


def srt_text(transcript: Transcript) -> str:
    blocks = []
    for i, u in enumerate(transcript.utterances, start=1):
        blocks.append(f"{i}\n{_clock(u.start_s).replace('.', ',')} --> {_clock(u.end_s).replace('.', ',')}\n"
                      f"[{u.speaker}]: {' '.join(u.text.split())}\n")
    return "\n".join(blocks)


def whisperx_json(transcript: Transcript, language: str | None = None) -> dict[str, Any]:
    """WhisperX's result layout: segments with their words and speaker, and every word in ``word_segments``."""
    segments = []
    for u in transcript.utterances:
        words = [{"word": w.text, "start": round(w.start_s, 3), "end": round(w.end_s, 3),
                  **({"score": round(w.score, 3)} if w.score is not None else {}), "speaker": u.speaker}
                 for w in (u.words or ())]
        segments.append({"start": round(u.start_s, 3), "end": round(u.end_s, 3), "text": u.text, "speaker": u.speaker,
                         "words": words})
    body: dict[str, Any] = {"segments": segments, "word_segments": [w for s in segments for w in s["words"]]}
    if language:
        body["language"] = language
    return body

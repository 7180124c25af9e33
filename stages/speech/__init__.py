"""Stage 2, speech: who spoke when, and what they said.

- ``asr``: words with times (faster-whisper, or WhisperX's batched transcription and alignment);
- ``diarization``: who speaks when, behind the :class:`Diarizer` protocol (the offline diarizer on
  bundled models, or a pyannote pipeline), with a pluggable voice embedding;
- ``words``: words assigned to voices and joined into utterances;
- ``blocks``: the audio in blocks, so memory holds one block;
- ``stage``: :class:`SpeechStage`, which runs them over a video's audio stream.
"""

from socialpipe.stages.speech.asr import load_whisper
from socialpipe.stages.speech.blocks import audio_blocks
from socialpipe.stages.speech.diarization import Diarizer, make_diarizer
from socialpipe.stages.speech.diarization.embedding import VoiceEmbedding
from socialpipe.stages.speech.diarization.hub import diarize_pretrained
from socialpipe.stages.speech.diarization.offline import OfflineDiarizer, diarize_offline
from socialpipe.stages.speech.stage import SpeechStage
from socialpipe.stages.speech.words import assign_words, build_utterances

__all__ = ["Diarizer", "OfflineDiarizer", "SpeechStage", "VoiceEmbedding", "assign_words", "audio_blocks",
           "build_utterances", "diarize_offline", "diarize_pretrained", "load_whisper", "make_diarizer"]

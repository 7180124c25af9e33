"""Words to utterances: each word goes to the voice heard over most of it, and utterances break where
the voice changes or a long pause falls; voices heard only in short bursts without a word are dropped."""

from __future__ import annotations

import numpy as np

from socialpipe.pipeline.contracts.artifacts import SpeakerTurn, Transcript, Utterance, Word

PAUSE_SPLIT_S = 1.0  # a pause this long inside one voice's speech starts a new utterance
MIN_WORDLESS_VOICE_S = 1.0  # a voice without a recognised word must be heard this long to count


def drop_wordless_blips(turns: list[SpeakerTurn], words: list[Word]) -> list[SpeakerTurn]:
    """The turns less those of voices heard for under MIN_WORDLESS_VOICE_S in all that have no
    recognised word over them: a click, a tone's onset or a laugh that the segmentation model took for a
    speaker. Longer speech without words (a hum, a language the recogniser missed) stays."""
    spoken: dict[str, float] = {}
    for turn in turns:
        spoken[turn.speaker] = spoken.get(turn.speaker, 0.0) + turn.duration_s
    centres = np.sort([(w.start_s + w.end_s) / 2 for w in words])
    with_words = {turn.speaker for turn in turns
                  if np.searchsorted(centres, turn.end_s) > np.searchsorted(centres, turn.start_s)}
    return [t for t in turns if t.speaker in with_words or spoken[t.speaker] >= MIN_WORDLESS_VOICE_S]

def assign_words(words: list[Word], turns: Transcript) -> list[str | None]:
    """Per word, the voice whose turns cover most of it, else the voice of the turn whose boundary is
    nearest the word's centre (None when there are no turns)."""
    starts = np.array([u.start_s for u in turns.utterances])
    ends = np.array([u.end_s for u in turns.utterances])
    speakers: list[str | None] = []
    for word in words:
        voice = turns.voice_over(word.start_s, word.end_s)
        if voice is None and len(turns):
            centre = (word.start_s + word.end_s) / 2
            voice = turns.utterances[int(np.argmin(np.minimum(abs(starts - centre), abs(ends - centre))))].speaker
        speakers.append(None if voice is None else str(voice))
    return speakers

def build_utterances(words: list[Word], speakers: list[str | None]) -> list[Utterance]:
    utterances, current = [], []

    def flush():
        if current:
            ws = tuple(w for w, _ in current)
            utterances.append(Utterance(ws[0].start_s, max(w.end_s for w in ws), current[0][1] or "SPEAKER_UNKNOWN",
                                        " ".join(w.text for w in ws), ws))

    for word, speaker in zip(words, speakers):
        if current and (speaker != current[-1][1] or word.start_s - current[-1][0].end_s > PAUSE_SPLIT_S):
            flush()
            current = []
        current.append((word, speaker))
    flush()
    return utterances

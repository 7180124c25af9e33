"""The link decision, as functions of the evidence: which face tracks own each voice, where audio and
vision disagree, which track each utterance is attributed to, and the persons the tracks form."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import Enum

import numpy as np
from scipy.optimize import linear_sum_assignment

from socialpipe.pipeline.contracts.artifacts import (AttributedSegment, SpeakerLink, Transcript,
                                                     UtteranceAttribution)
from socialpipe.pipeline.contracts.config import LinkConfig
from socialpipe.stages.link.evidence import SpeakingEvidence, VoiceEvidence, speaking_steps, together
from socialpipe.stages.link.mouth import MouthScores
from socialpipe.stages.link.scores import ASD_FPS

ANONYMOUS_VOICE = re.compile(r"^(speaker|spk|voice)[ _-]?\d+$", re.IGNORECASE)
SEGMENT_SMOOTH_STEPS = 12  # about half a second: who speaks is decided on scores averaged this long
# A face speaks an utterance by its mouth when its mouth activity (z-scored over the track's life) averages
# at least MOUTH_SPEAKS over the utterance and MOUTH_MARGIN more than every other face seen through it.
# Measured: on the drawn sample faces a speaker averages +2.0 to +3.0 and the others about -1.0; on the
# real footage of docs/link.md no face of any utterance averages over +0.64, so real faces never pass.
MOUTH_SPEAKS, MOUTH_MARGIN = 1.0, 1.0
MIN_UTTERANCE_S = 1.0  # shorter utterances are too short to judge a mouth on
ACTIVE_SPEAKER, BY_MOUTH, BY_IDENTITY = "active speaker", "mouth activity", "face identity"


class DisagreementKind(str, Enum):
    """Audio and vision disagreeing, in the two ways the link stage can see."""

    SPLIT = "two voices on one face"  # the diarization may have split one person
    MERGED = "one voice on two faces seen together"  # the diarization may have merged two people


@dataclass(frozen=True)
class Disagreement:
    kind: DisagreementKind
    meaning: str
    corrected: bool
    track_id: int | None = None  # SPLIT: the face
    voices: tuple[str, ...] = ()  # SPLIT: the voices it speaks for
    voice: str | None = None  # MERGED: the voice
    track_ids: tuple[int, ...] = ()  # MERGED: the faces

    def concerns(self, voice: str) -> bool:
        return self.voice == voice or voice in self.voices

    def to_json(self) -> dict:
        if self.kind is DisagreementKind.SPLIT:
            return {"kind": self.kind.value, "track_id": self.track_id, "voices": list(self.voices),
                    "meaning": self.meaning, "corrected": self.corrected}
        return {"kind": self.kind.value, "voice": self.voice, "track_ids": list(self.track_ids),
                "meaning": self.meaning, "corrected": self.corrected}


@dataclass
class Ownership:
    """Which face tracks each voice owns, how each was decided, and the disagreements found."""

    owners: dict[str, list[int]]
    how: dict[tuple[str, int], str] = field(default_factory=dict)
    disagreements: list[Disagreement] = field(default_factory=list)
    not_followed: dict[str, list[str]] = field(default_factory=dict)  # voice -> persons not followed, why

    def give(self, voice: str, track: int, how: str) -> None:
        self.owners[voice].append(track)
        self.how[voice, track] = how

    @property
    def taken(self) -> set[int]:
        return {t for ids in self.owners.values() for t in ids}


def own_by_speaking(evidence: list[list[VoiceEvidence]], face_ids: list[int], voices: list[str],
                    settings: LinkConfig) -> Ownership:
    """Each track to the voice it speaks for most clearly, if it clearly speaks for one; a track that clearly
    speaks for several is a disagreement (with ``correct``, every one of those voices gets it)."""
    found = Ownership({voice: [] for voice in voices})
    for t, tid in enumerate(face_ids):
        qualified = sorted((v for v in range(len(voices)) if evidence[t][v].qualifies(settings)),
                           key=lambda v: -evidence[t][v].margin)
        if not qualified:
            continue
        found.give(voices[qualified[0]], tid, ACTIVE_SPEAKER)
        if len(qualified) > 1:
            found.disagreements.append(Disagreement(DisagreementKind.SPLIT, "the diarization may have split one person",
                                                    settings.correct, track_id=tid,
                                                    voices=tuple(voices[v] for v in qualified)))
            if settings.correct:
                for v in qualified[1:]:
                    found.give(voices[v], tid, f"{ACTIVE_SPEAKER} (same face as {voices[qualified[0]]})")
    return found


def own_by_comparison(found: Ownership, evidence: list[list[VoiceEvidence]], face_ids: list[int], voices: list[str],
                      seen: np.ndarray, settings: LinkConfig) -> None:
    """A free track that speaks less often than ``link.min_speaking_share`` for a voice (a small or half-hidden
    face) still goes to it when it is on screen with other faces and is plainly the one speaking: it speaks on
    at least ``link.min_speaking_share_among`` of the voice's speech, ``link.min_margin`` more often than while
    other voices speak and than every face seen with it, speaks for no other voice more, and is never on
    screen together with a track the voice already owns."""
    if not voices:
        return
    row = {t: i for i, t in enumerate(face_ids)}
    steps = settings.min_seen_s * ASD_FPS
    taken = found.taken
    for t, tid in enumerate(face_ids):
        if tid in taken:
            continue
        v = max(range(len(voices)), key=lambda k: -1.0 if evidence[t][k].margin is None else evidence[t][k].margin)
        mine = evidence[t][v]
        if mine.seen_steps < steps or mine.speaking_share is None or \
                mine.speaking_share < settings.min_speaking_share_among or mine.margin < settings.min_margin:
            continue
        beside = [u for u in range(len(face_ids)) if u != t and together(seen, row, tid, face_ids[u]) >= steps]
        if not beside or any(mine.speaking_share - (evidence[u][v].speaking_share or 0.0) < settings.min_margin
                             for u in beside):
            continue
        if any(together(seen, row, tid, other) for other in found.owners[voices[v]]):
            continue
        found.give(voices[v], tid, f"{ACTIVE_SPEAKER} (the one speaking of the faces on screen)")


LONE_FACE_COMPANY = 0.1  # a face is alone on screen when another face is seen on at most this share of the steps


def own_by_lone_face(found: Ownership, evidence: list[list[VoiceEvidence]], face_ids: list[int], voices: list[str],
                     seen: np.ndarray, speaking: np.ndarray, settings: LinkConfig,
                     faces: dict[int, int] | None = None) -> None:
    """A voice no face speaks for only because its face speaks as often while other voices speak (the margin
    test) still gets that face when the face is alone on screen through the voice's speech and speaks on at
    least ``link.min_speaking_share`` of it: a close-up of one person whose speech the diarization cut into
    two voices (a talk-show host heard as two voices, or a line's last words given to the next voice). The
    face also speaking for another voice is said as the "two voices on one face" disagreement. Where other
    faces are on screen the margin test stands (one face the network finds speaking through everyone's
    speech is not evidence). A voice that owns faces already gets such a close-up too when it is never on
    screen with them and face identity (``faces``: track -> person, for the tracks that have a face identity)
    does not say it is someone else: the host's close-up, where the voice went to the host's small face in the
    wide shot. Best share first, one face per voice."""
    faces = faces or {}
    alone = (speaking > 0) & (speaking.sum(axis=0, keepdims=True) == 1)
    on_screen = seen.sum(axis=0)  # faces seen at each step
    steps = settings.min_seen_s * ASD_FPS
    row = {t: i for i, t in enumerate(face_ids)}
    for v, voice in enumerate(voices):
        owners = found.owners[voice]
        candidates = []
        for t, tid in enumerate(face_ids):
            mine = evidence[t][v]
            if mine.seen_steps < steps or mine.speaking_share is None or \
                    mine.speaking_share < settings.min_speaking_share or tid in owners or \
                    any(together(seen, row, tid, other) or _told_apart(faces, tid, other) for other in owners):
                continue
            during = alone[v] & seen[t]
            company = (on_screen[during] > 1).mean()  # steps on which another face is seen beside this one
            if company <= LONE_FACE_COMPANY:
                candidates.append((mine.speaking_share, tid))
        if not candidates:
            continue
        _, tid = max(candidates)
        others = tuple(other for other, ids in found.owners.items() if tid in ids)
        found.give(voice, tid, f"{ACTIVE_SPEAKER} (the only face on screen, speaking through it)")
        if others:
            found.disagreements.append(Disagreement(DisagreementKind.SPLIT, "the diarization may have split one person",
                                                    settings.correct, track_id=tid, voices=(*others, voice)))


def _told_apart(faces: dict[int, int], a: int, b: int) -> bool:
    """Face identity says tracks ``a`` and ``b`` are two people (both have one, and they differ)."""
    return a in faces and b in faces and faces[a] != faces[b]


def asd_says_silent(rows: list[VoiceEvidence], settings: LinkConfig) -> bool:
    """The network saw this face long enough during some voice and found it not speaking: not a fallback
    candidate (a listener whose head moves)."""
    judged = [r for r in rows if r.speaking_share is not None and r.seen_steps >= settings.min_seen_s * ASD_FPS]
    return bool(judged) and max(r.speaking_share for r in judged) < settings.silent_share


def own_by_mouth(found: Ownership, mouth: MouthScores, face_ids: list[int], voices: list[str],
                 evidence: list[list[VoiceEvidence]], seen: np.ndarray, settings: LinkConfig) -> None:
    """Voices no face speaks for, matched one-to-one to free faces whose mouths follow them (faces the
    network found silent are not free); then each such voice's person in other shots."""
    orphans = [v for v, voice in enumerate(voices) if not found.owners[voice]]
    taken = found.taken
    free = [t for t, tid in enumerate(face_ids) if tid not in taken and not asd_says_silent(evidence[t], settings)]
    if not free:
        return
    sub = mouth.score[np.ix_(orphans, free)]
    for i, j in zip(*linear_sum_assignment(-sub)):
        v, t = orphans[i], free[j]
        if mouth.score[v, t] >= settings.min_score and mouth.coverage[v, t] >= settings.min_coverage:
            found.give(voices[v], face_ids[t], BY_MOUTH)
    _more_shots_by_mouth(found, mouth.correlation, face_ids, free, orphans, voices, seen, settings)


def own_second_faces_by_mouth(found: Ownership, mouths: np.ndarray, transcript: Transcript, face_ids: list[int],
                              seen: np.ndarray, evidence: list[list[VoiceEvidence]], settings: LinkConfig) -> None:
    """A voice linked by mouth activity alone also owns a free face that plainly speaks one of its utterances
    by mouth (``MOUTH_SPEAKS``, ``MOUTH_MARGIN``) while one of the voice's own faces is seen, silent: the
    diarization heard two people as one voice, and the faces tell them apart (``merged_voices`` then says so,
    and the utterances follow the mouths). Only voices the network left to the mouth fallback (drawn or
    animated faces, faces too small for it): where the network judges, its own evidence splits voices.
    ``mouths``: (tracks, steps) mouth activity on the 25 fps grid."""
    by_mouth = mouth_judged(found)
    if not by_mouth:
        return
    during = transcript.utterance_activity(1 / ASD_FPS, mouths.shape[1]) > 0
    row = {t: i for i, t in enumerate(face_ids)}
    free = {tid for t, tid in enumerate(face_ids)
            if tid not in found.taken and not asd_says_silent(evidence[t], settings)}
    for u, inside in zip(transcript.utterances, during):
        if u.speaker not in by_mouth or inside.sum() < MIN_UTTERANCE_S * ASD_FPS:
            continue
        through = [tid for tid in face_ids if seen[row[tid], inside].mean() >= 0.8]
        activity = {tid: _mean(mouths[row[tid], inside]) for tid in through}
        ranked = sorted((tid for tid in through if activity[tid] is not None), key=lambda tid: -activity[tid])
        if len(ranked) < 2 or ranked[0] not in free or not set(ranked[1:]) & set(found.owners[u.speaker]):
            continue
        if activity[ranked[0]] >= MOUTH_SPEAKS and activity[ranked[0]] - activity[ranked[1]] >= MOUTH_MARGIN:
            found.give(u.speaker, ranked[0], f"{BY_MOUTH} (a second face speaking this voice)")
            free.discard(ranked[0])


def mouth_judged(found: Ownership) -> set[str]:
    """The voices whose every face was given by mouth activity (the network judged none of them)."""
    return {voice for voice, ids in found.owners.items()
            if ids and all(found.how[voice, t].startswith(BY_MOUTH) for t in ids)}


def _mean(values: np.ndarray) -> float | None:
    finite = values[np.isfinite(values)]
    return float(finite.mean()) if finite.size else None


def _more_shots_by_mouth(found: Ownership, correlation: np.ndarray, face_ids: list[int], free: list[int],
                         orphans: list[int], voices: list[str], seen: np.ndarray, settings: LinkConfig) -> None:
    """A voice the mouth fallback linked also takes its person's tracks in other shots: a free track whose
    mouth follows this voice best of all voices, with correlation >= ``link.min_correlation``, and never on
    screen together with the voice's tracks (so at most one face per voice at a time). Best first."""
    row = {t: i for i, t in enumerate(face_ids)}
    linked = {voices[v] for v in orphans if found.owners[voices[v]]}
    taken = found.taken
    candidates = []
    for t in free:
        if face_ids[t] in taken:
            continue
        v = int(np.argmax(correlation[:, t]))
        if voices[v] in linked and correlation[v, t] >= settings.min_correlation:
            candidates.append((float(correlation[v, t]), voices[v], face_ids[t]))
    for _, voice, tid in sorted(candidates, reverse=True):
        if all(together(seen, row, tid, other) == 0 for other in found.owners[voice]):
            found.give(voice, tid, f"{BY_MOUTH} (the same person in another shot)")


IDENTITY_DOMINANCE = 3.0  # another voice's claim on a person over this many times a voice's own: it does not follow


def identity_claims(found: Ownership, persons: dict[int, int], face_ids: list[int], voices: list[str],
                    evidence: list[list[VoiceEvidence]]) -> dict[int, dict[str, int]]:
    """Per person (face identity) and voice, how much that person's tracks were seen speaking for the voice:
    the steps on which a track the voice owns by its own evidence (not by identity) speaks while the voice
    speaks alone, at least 1 per such track (a face linked by mouth activity, which the network did not judge)."""
    row = {t: i for i, t in enumerate(face_ids)}
    claims: dict[int, dict[str, int]] = {}
    for v, voice in enumerate(voices):
        for t in found.owners[voice]:
            if t in persons and not found.how[voice, t].startswith(BY_IDENTITY):
                claims.setdefault(persons[t], {}).setdefault(voice, 0)
                claims[persons[t]][voice] += _spoken_steps(evidence[row[t]][v])
    return claims


def _spoken_steps(e: VoiceEvidence) -> int:
    """Steps on which a track speaks while the voice speaks alone; at least 1 (a track linked by mouth activity)."""
    return max(round(e.seen_steps * (e.speaking_share or 0.0)), 1)


def strongest_first(found: Ownership, face_ids: list[int], voices: list[str], evidence: list[list[VoiceEvidence]],
                    identity: dict[int, int] | None = None) -> dict[str, list[int]]:
    """Each voice's tracks ordered for ``persons_of_tracks``, which makes the voice's person that of the first:
    first the face the voice is seen speaking from most, where a face is a person of face identity
    (``identity``, its tracks' steps summed; it goes first on a tie) or a track that has no such person with
    other tracks. Tracks the voice owns by identity add nothing. A voice the diarization merged from two
    people, mostly spoken from one, so joins its unplaced tracks to that one, not to the other's face."""
    identity = identity or {}
    row = {t: i for i, t in enumerate(face_ids)}
    sizes: dict[int, int] = {}
    for t in face_ids:
        if t in identity:
            sizes[identity[t]] = sizes.get(identity[t], 0) + 1
    ordered = {}
    for v, voice in enumerate(voices):
        ids = found.owners[voice]
        steps = {t: 0 if found.how[voice, t].startswith(BY_IDENTITY) else _spoken_steps(evidence[row[t]][v])
                 for t in ids}
        face = {t: ("person", identity[t]) if sizes.get(identity.get(t), 0) > 1 else ("track", t) for t in ids}
        strength: dict[tuple, int] = {}
        for t in ids:
            strength[face[t]] = strength.get(face[t], 0) + steps[t]
        ordered[voice] = sorted(ids, key=lambda t: (-strength[face[t]], face[t][0] == "track", -steps[t]))
    return ordered


def own_by_identity(found: Ownership, persons: dict[int, int], face_ids: list[int], seen: np.ndarray,
                    claims: dict[int, dict[str, int]] | None = None) -> None:
    """A voice also owns the other tracks of each person it speaks from (face identity, from the people stage):
    that person in other shots, whether speaking there or not, unless a track is seen together with one the
    voice already owns. A person whose tracks speak for two voices gives both voices all its tracks (one person
    the diarization heard as two voices), except to a voice whose claim on the person (``claims``, see
    ``identity_claims``) is under 1/``IDENTITY_DOMINANCE`` of another voice's: one wrong call of the
    network (a small face in a wide shot, a line's first words before a cut) must not give a voice every
    close-up of someone else, where that person listens to it off screen. Such a voice keeps the tracks its
    own evidence gave it; ``found.not_followed`` says which tracks it was not given, and why."""
    row = {t: i for i, t in enumerate(face_ids)}
    members: dict[int, list[int]] = {}
    for t in face_ids:
        if t in persons:
            members.setdefault(persons[t], []).append(t)
    claims = claims or {}
    for voice, ids in found.owners.items():
        for person in dict.fromkeys(persons[t] for t in list(ids) if t in persons):
            mine = claims.get(person, {}).get(voice, 0)
            stronger = max(((n, other) for other, n in claims.get(person, {}).items() if other != voice), default=None)
            if stronger and stronger[0] > IDENTITY_DOMINANCE * mine:
                left = [t for t in members[person] if t not in found.owners[voice]]
                found.not_followed.setdefault(voice, []).append(
                    f"tracks {', '.join(map(str, left))} (face identity: the person of track "
                    f"{next(t for t in ids if persons.get(t) == person)}): that person speaks "
                    f"{stronger[0] / ASD_FPS:.1f} s for {stronger[1]}, {mine / ASD_FPS:.1f} s for this voice")
                continue
            for other in members[person]:
                if other not in found.owners[voice] and \
                        all(together(seen, row, other, mine_t) == 0 for mine_t in found.owners[voice]):
                    found.give(voice, other, f"{BY_IDENTITY} (the same person in another shot)")


def merged_voices(found: Ownership, seen: np.ndarray, row: dict[int, int], settings: LinkConfig) -> None:
    """One voice speaking from two faces seen together (not already a face speaking for two voices)."""
    for voice, ids in found.owners.items():
        for i, a in enumerate(ids):
            for b in ids[i + 1:]:
                if together(seen, row, a, b) >= settings.min_seen_s * ASD_FPS and not any(
                        d.kind is DisagreementKind.SPLIT and d.track_id in (a, b) for d in found.disagreements):
                    meaning = "the diarization may have merged two people"
                    if settings.correct:
                        meaning += "; each utterance follows the face speaking in it"
                    found.disagreements.append(Disagreement(DisagreementKind.MERGED, meaning, settings.correct,
                                                            voice=voice, track_ids=(a, b)))


def primary_tracks(found: Ownership, grid: SpeakingEvidence, row: dict[int, int], voices: list[str],
                   speaking: np.ndarray) -> dict[str, int]:
    """Each linked voice's main track: the one that speaks most while the voice does."""
    return {voice: max(ids, key=lambda t: speaking_steps(grid, row[t], speaking[voices.index(voice)]))
            for voice, ids in found.owners.items() if ids}


def attribute_utterances(transcript: Transcript, grid: SpeakingEvidence, seen: np.ndarray,
                         owners: dict[str, list[int]], primary: dict[str, int], correct: bool,
                         mouths: SpeakingEvidence | None = None,
                         by_mouth: frozenset[str] = frozenset()) -> list[UtteranceAttribution]:
    """Each utterance's track: among its voice's tracks seen during at least 30% of it, the one the network finds
    speaking most (with ``correct``), else the voice's main track when seen, else the one seen longest. For the
    voices in ``by_mouth`` (linked by mouth activity alone) the mouths (``mouths``, on the same grid) judge in
    the network's place; the score given is still the network's."""
    during = transcript.utterance_activity(1 / ASD_FPS, grid.logits.shape[1]) > 0
    row = {t: i for i, t in enumerate(grid.track_ids)}
    result = []
    for u, inside in zip(transcript.utterances, during):
        judge = mouths if mouths is not None and u.speaker in by_mouth else grid
        shown = {t: int(seen[row[t], inside].sum()) for t in owners.get(u.speaker, []) if t in row}
        shown = {t: n for t, n in shown.items() if n and n >= 0.3 * inside.sum()}
        network = {t: _mean(grid.logits[row[t], inside & seen[row[t]]]) for t in shown}
        speaking = network if judge is grid else {t: _mean(judge.logits[row[t], inside & seen[row[t]]]) for t in shown}
        scored = [t for t in shown if speaking[t] is not None]
        best = None
        if shown:
            if correct and scored:
                best = max(scored, key=lambda t: speaking[t])
            elif primary.get(u.speaker) in shown:
                best = primary[u.speaker]
            else:
                best = max(shown, key=shown.get)
        segments = ()
        if correct and len(scored) > 1:  # the voice's faces seen together: follow whichever speaks, moment by moment
            segments = _speaking_segments(judge, [row[t] for t in scored], np.flatnonzero(inside))
        result.append(UtteranceAttribution(
            round(u.start_s, 3), round(u.end_s, 3), u.speaker, best,
            None if best is None or network[best] is None else round(network[best], 3), segments))
    return result


def _speaking_segments(grid: SpeakingEvidence, rows: list[int], steps: np.ndarray) -> tuple[AttributedSegment, ...]:
    """Within an utterance, stretches on which each of the given tracks is the one the network finds speaking
    most (scores averaged over about half a second; unseen counts as silent). A stretch on which none of them
    is on screen has no segment: the BBT receptionist's "Hang on", in a voice with Leonard's "Excuse me" and
    in her own close-up after a cut, went to Sheldon's track of the shot before, the first of two unseen."""
    scores = grid.logits[np.ix_(rows, steps)]
    values = np.nan_to_num(scores, nan=-20.0)
    kernel = np.ones(SEGMENT_SMOOTH_STEPS) / SEGMENT_SMOOTH_STEPS
    smooth = np.stack([np.convolve(v, kernel, mode="same") for v in values])
    winner = np.where(np.isfinite(scores).any(axis=0), smooth.argmax(axis=0), -1)
    segments, start = [], 0
    for k in range(1, len(steps) + 1):
        if k == len(steps) or winner[k] != winner[start]:
            if winner[start] >= 0:
                segments.append(AttributedSegment(round(steps[start] / ASD_FPS, 3),
                                                  round((steps[k - 1] + 1) / ASD_FPS, 3),
                                                  grid.track_ids[rows[winner[start]]]))
            start = k
    return tuple(segments)


def persons_of_tracks(owners: dict[str, list[int]], voices: list[str], face_ids: list[int],
                      identity: dict[int, int] | None = None, seen: np.ndarray | None = None) -> dict[int, int]:
    """The tracks of one face identity (the people stage's persons) are one person, and so are the tracks of one
    voice; any other face is a person of its own. Faces are grouped first: a voice may be spoken from a face
    the active-speaker model mistook. A voice's person is that of its first track (``strongest_first``: of
    the face speaking most for it), and a track face identity placed elsewhere stays there. Two faces on
    screen together are never one person (with ``seen``): a voice spoken from both is two people the
    diarization heard as one."""
    row = {t: i for i, t in enumerate(face_ids)}
    persons: dict[int, int] = {}
    members: dict[int, list[int]] = {}
    same_face: dict[int, list[int]] = {}
    for tid in face_ids:
        if identity and tid in identity:
            same_face.setdefault(identity[tid], []).append(tid)
    faces_of_one = [ids for ids in same_face.values() if len(ids) > 1]  # first: faces are surer than voices
    for ids in faces_of_one + [owners[voice] for voice in voices] + [[tid] for tid in face_ids]:
        known = persons.get(ids[0]) if ids else None
        for t in ids:
            if t in persons:
                continue
            apart = known is None or (seen is not None and any(together(seen, row, t, m) for m in members[known]))
            persons[t] = max(persons.values(), default=0) + 1 if apart else known
            members.setdefault(persons[t], []).append(t)
            known = persons[t] if known is None else known
    return persons


def unlinked_reason(column: list[VoiceEvidence], face_ids: list[int], settings: LinkConfig) -> str:
    """Why a voice has no face, in words, from the best-placed face's evidence against the thresholds: no face
    on screen while it speaks alone, faces seen too briefly, none speaking often enough, or one speaking as
    often while other voices speak."""
    seen = [(e.seen_steps, t) for t, e in enumerate(column) if e.seen_steps]
    if not seen:
        return "unlinked: no face is on screen while this voice speaks alone"
    longest, _ = max(seen)
    if longest < settings.min_seen_s * ASD_FPS:
        return (f"unlinked: faces are on screen for {longest / ASD_FPS:.2f} s at most while this voice speaks alone "
                f"(link.min_seen_s {settings.min_seen_s:g} s)")
    judged = [(e.speaking_share or 0.0, t) for t, e in enumerate(column) if e.seen_steps >= settings.min_seen_s * ASD_FPS]
    share, best = max(judged)
    if share < settings.min_speaking_share:
        return (f"unlinked: no face on screen speaks with it: the most, track {face_ids[best]}, speaks on "
                f"{share:.0%} of its {column[best].seen_steps / ASD_FPS:.1f} s (link.min_speaking_share "
                f"{settings.min_speaking_share:.0%})")
    return (f"unlinked: track {face_ids[best]} speaks on {share:.0%} of it, but about as often while other voices "
            f"speak (margin {column[best].margin or 0.0:.2f}, link.min_margin {settings.min_margin:g})")


def build_links(found: Ownership, voices: list[str], face_ids: list[int], evidence: list[list[VoiceEvidence]],
                mouth: MouthScores | None, primary: dict[str, int], attributions: list[UtteranceAttribution],
                persons: dict[int, int], settings: LinkConfig) -> tuple[SpeakerLink, ...]:
    """One link per voice with its evidence: the deciding rule per track, the three best candidates, the
    share of its utterances with a track, and the disagreements that concern it."""
    row = {t: i for i, t in enumerate(face_ids)}
    links = []
    for v, voice in enumerate(voices):
        ids = found.owners[voice]
        ranked = sorted(range(len(face_ids)), key=lambda t: -(evidence[t][v].margin or -1.0))
        candidates = {str(face_ids[t]): evidence[t][v].to_json() for t in ranked[:3]}
        if mouth is not None:
            for tid in candidates:
                m = row[int(tid)]
                candidates[tid].update(mouth_correlation=round(float(mouth.correlation[v, m]), 3),
                                       mouth_score=round(float(mouth.score[v, m]), 3))
        mine = [u for u in attributions if u.voice == voice]
        if ids:
            best = primary[voice]
            # the confidence of the rule that decided: a track joined by face identity takes its person's decision
            basis = best if not found.how[voice, best].startswith(BY_IDENTITY) else \
                next(t for t in ids if not found.how[voice, t].startswith(BY_IDENTITY))
            by_speaking = found.how[voice, basis].startswith(ACTIVE_SPEAKER)
            confidence = float(np.clip(evidence[row[basis]][v].margin if by_speaking else mouth.score[v, row[basis]],
                                       0, 1))
            decision = "linked by " + ", ".join(sorted({found.how[voice, t] for t in ids}))
        else:
            best = None
            confidence = 1.0 - float(np.clip(evidence[ranked[0]][v].margin or 0.0, 0, 1)) if ranked else 1.0
            decision = unlinked_reason([evidence[t][v] for t in range(len(face_ids))], face_ids, settings)
        links.append(SpeakerLink(
            voice=voice, track_id=best, track_ids=tuple(sorted(ids)), person_id=None if best is None else persons[best],
            confidence=confidence, display_name=None if ANONYMOUS_VOICE.match(voice) else voice,
            evidence={
                "decision": decision,
                "tracks": {str(t): found.how[voice, t] for t in sorted(ids)},
                "candidates": candidates,
                "utterances_with_a_track": round(sum(u.track_id is not None for u in mine) / len(mine), 3)
                if mine else None,
                "disagreements": [d.to_json() for d in found.disagreements if d.concerns(voice)],
                **({"face_identity_not_followed": found.not_followed[voice]} if voice in found.not_followed else {}),
            },
        ))
    return tuple(links)

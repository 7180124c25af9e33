"""Stage 3, link: which visible face tracks own each voice, decided without training, with evidence.

Reads top to bottom:
1. every face track gets a per-frame speaking score from the active-speaker model (``link.asd_model``;
   LR-ASD by default, :mod:`.speaking`), fed 25 fps face crops and the audio;
2. per track and voice, the evidence (:mod:`.evidence`) is the share of the track's visible frames on
   which the model says "speaking" while that voice speaks alone, against the share while it does not;
3. each track goes to the voice it speaks for most clearly, if it clearly speaks for one (:mod:`.decision`):
   a voice may own many tracks (one person seen in several shots, or after a gap); a track belongs to at
   most one voice; silent listeners stay unlinked; a voice with no speaking face stays off screen; a face
   that speaks less often (small, half hidden) still goes to a voice when it is plainly the one speaking
   of the faces on screen with it, and a face alone on screen that speaks through a voice goes to it
   even when it speaks as much through the voice heard next to it (one person cut into two voices);
4. voices no track speaks for may still be linked by mouth activity (:mod:`.mouth`) where the model's
   evidence is absent (faces too small for it, drawn or animated faces it was not trained on); such a
   voice also takes a second face that plainly speaks one of its utterances by mouth (two people heard
   as one voice), and its utterances follow the mouths;
5. audio and vision disagreeing is said in the evidence: one voice speaking from two faces seen together
   (the diarization merged two people), or one face speaking for two voices (it split one person); with
   ``link.correct`` the per-utterance attribution and the links follow the faces;
6. a voice also owns the other shots of each person (face identity) it speaks from, unless another voice
   speaks from that person far longer (one wrong call must not give it someone else's close-ups);
7. each utterance is attributed to the linked track that speaks during it, and the tracks of one voice
   form one person: the person of the face it speaks from most.
"""

from __future__ import annotations

import numpy as np

from socialpipe.pipeline.contracts.artifacts import SpeakerLinks, Tracks, Transcript, VideoInfo
from socialpipe.pipeline.contracts.config import ASD_MODELS, LinkConfig
from socialpipe.pipeline.contracts.stage import StageInputs
from socialpipe.pipeline.contracts.progress import ProgressHook, Timer, quiet
from socialpipe.pipeline.contracts.timebase import duration_of, frame_step
from socialpipe.stages.link.decision import (Ownership, attribute_utterances, build_links, identity_claims,
                                             merged_voices, mouth_judged, own_by_comparison, own_by_identity,
                                             own_by_lone_face, own_by_mouth, own_by_speaking,
                                             own_second_faces_by_mouth, persons_of_tracks, primary_tracks,
                                             strongest_first)
from socialpipe.stages.link.evidence import (SpeakingEvidence, speaking_grid, speaking_probabilities, visibility,
                                             voice_evidence)
from socialpipe.stages.link.mouth import (MouthActivity, MouthMeter, MouthScores, measure_mouths, mouth_grid,
                                         mouth_scores)
from socialpipe.stages.link.scores import ASD_FPS, ActiveSpeakerScorer


class LinkStage:
    """Voices -> the face tracks that speak them, from active-speaker scores (mouth activity as fallback)."""

    def __init__(self, settings: LinkConfig):
        self.settings = settings
        self.scorer: ActiveSpeakerScorer = ASD_MODELS.build(settings.asd_model, settings)

    def check(self, inputs: StageInputs) -> None:
        """Before a run writes anything: the active-speaker model can be loaded (a one-line InputError if not)."""
        if self.settings.method == "asd":
            self.scorer.check()

    def run(self, inputs: StageInputs, progress: ProgressHook = quiet) -> SpeakerLinks:
        return self.link(inputs.video, inputs.need("tracks"), inputs.need("transcript"), progress)

    def link(self, video: VideoInfo, tracks: Tracks, transcript: Transcript,
             progress: ProgressHook = quiet) -> SpeakerLinks:
        """Each voice's link to the face tracks that speak it, with the evidence."""
        settings = self.settings
        timer = Timer("asd", "mouth", "link")
        steps = max(int(np.ceil(video.duration_s * ASD_FPS)), 1)
        face_ids = [t for t in tracks.track_ids if tracks.kinds[t] == "face"]
        # the mouth fallback may be needed: it measures along the active-speaker model's decode of the frames
        meter = MouthMeter(video, tracks, settings.analysis_fps) \
            if settings.mouth_fallback and settings.method == "asd" and face_ids else None
        with timer("asd"):
            if settings.method == "asd":
                scores, notes = self.scorer.score(video, tracks, progress, watch=None if meter is None else meter.see)
            else:
                scores, notes = [], {"head": "off (link.method mouth): mouth activity only"}
        if meter is not None:
            timer.move(meter.seconds, "asd", "mouth")
        with timer("link"):
            row = {t: i for i, t in enumerate(face_ids)}
            grid = speaking_grid(scores, face_ids, steps)
            voices, speaking = transcript.activity(1 / ASD_FPS, steps)
            evidence = voice_evidence(grid, speaking, settings)
            found = own_by_speaking(evidence, face_ids, voices, settings)
            seen = visibility(tracks, face_ids, video, steps)
            own_by_comparison(found, evidence, face_ids, voices, seen, settings)
            own_by_lone_face(found, evidence, face_ids, voices, seen, speaking, settings, identified_faces(tracks))
        mouth, mouths = None, None
        if (settings.mouth_fallback or settings.method == "mouth") and face_ids and \
                any(not ids for ids in found.owners.values()):
            with timer("mouth"):
                mouth, activity = self._mouth_scores(video, tracks, transcript, progress, meter)
            with timer("link"):
                own_by_mouth(found, mouth, face_ids, voices, evidence, seen, settings)
                mouths = SpeakingEvidence(face_ids, mouth_grid(activity, face_ids, steps, 1 / ASD_FPS))
                if settings.correct:
                    own_second_faces_by_mouth(found, mouths.logits, transcript, face_ids, seen, evidence, settings)
        with timer("link"):
            if tracks.persons:
                own_by_identity(found, tracks.persons, face_ids, seen,
                                identity_claims(found, tracks.persons, face_ids, voices, evidence))
            merged_voices(found, seen, row, settings)
            primary = primary_tracks(found, grid, row, voices, speaking)
            attributions = attribute_utterances(transcript, grid, seen, found.owners, primary, settings.correct,
                                                mouths, frozenset(mouth_judged(found)))
            persons = persons_of_tracks(strongest_first(found, face_ids, voices, evidence, tracks.persons), voices,
                                        face_ids, tracks.persons, seen)
            links = build_links(found, voices, face_ids, evidence, mouth, primary, attributions, persons, settings)
        return SpeakerLinks(links, self._meta(notes, found, mouth, timer), tuple(attributions), persons,
                            speaking_probabilities(scores, video))

    def _mouth_scores(self, video: VideoInfo, tracks: Tracks, transcript: Transcript, progress: ProgressHook,
                      meter: MouthMeter | None) -> tuple[MouthScores, MouthActivity]:
        """Mouth agreement with each voice: from what ``meter`` measured along the active-speaker model's decode
        when it saw every frame it needs, else from a decode of its own."""
        mouths = meter.activity() if meter is not None and meter.complete else \
            measure_mouths(video, tracks, self.settings.analysis_fps, progress)
        frame_s = duration_of(frame_step(video.fps, self.settings.analysis_fps), video.fps)
        _, coarse = transcript.activity(frame_s, len(mouths.times_s))
        return mouth_scores(mouths, coarse), mouths

    @staticmethod
    def _meta(notes: dict, found: Ownership, mouth: MouthScores | None, timer: Timer) -> dict:
        return {"source": "link stage: LR-ASD active-speaker scores x speech activity"
                          + (" (mouth activity for voices it left unlinked)" if mouth is not None else ""),
                "speaking": notes, "disagreements": [d.to_json() for d in found.disagreements],
                "timing_s": timer.seconds()}


def identified_faces(tracks: Tracks) -> dict[int, int]:
    """Face track -> person, for the tracks the people stage gave a face identity (tracks without one, or every
    track when identity was off or the tracks came from elsewhere, are left out: nothing is known of them)."""
    identity = tracks.meta.get("identity")
    if not isinstance(identity, dict) or not tracks.persons:
        return {}
    without = {int(t) for t in identity.get("without_identity", [])}
    return {t: p for t, p in tracks.persons.items() if t not in without and tracks.kinds.get(t) == "face"}

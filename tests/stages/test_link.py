from __future__ import annotations

import pytest

from socialpipe.pipeline.contracts.artifacts import Tracks
from socialpipe.pipeline.contracts.config import LinkConfig
from socialpipe.pipeline.contracts.formats import load_links, load_tracks, load_transcript
from socialpipe.pipeline.evaluation.scoring import score_link
from socialpipe.pipeline.media.video import probe
from socialpipe.stages.link import LinkStage, mouth_box
from tests.builders import Head, talking_heads
from tests.conftest import SAMPLE_LINKS, SAMPLE_TRACKS, SAMPLE_TRANSCRIPT, SAMPLE_VIDEO


def run_link(video, tracks, transcript, **settings):
    """The mouth-activity linker: these scenes are drawn faces (a photograph with a painted mouth), on which the
    LR-ASD network, trained on real faces, gives no reliable scores (tests/stages/test_asd.py covers it)."""
    return LinkStage(LinkConfig(**{"method": "mouth", **settings})).link(probe(video), tracks, transcript)


def test_sample_voices_link_to_their_faces_and_the_off_screen_voice_stays_unlinked():
    transcript = load_transcript(SAMPLE_TRANSCRIPT)
    links = run_link(SAMPLE_VIDEO, load_tracks(SAMPLE_TRACKS, fps=None), transcript)
    scores = score_link(links, load_links(SAMPLE_LINKS), transcript)
    assert scores["voice_accuracy"] == 1.0 and scores["time_accuracy"] >= 0.9, scores
    dana = next(link for link in links.links if link.voice == "Dana")
    assert dana.track_id is None and dana.evidence["decision"].startswith("unlinked")
    alice = next(link for link in links.links if link.voice == "Alice")
    assert alice.display_name == "Alice" and alice.evidence["utterances_with_a_track"] == 1.0
    assert alice.evidence["candidates"]["1"]["mouth_correlation"] > 0.5
    assert alice.evidence["decision"] == "linked by mouth activity"


def test_voice_with_no_visible_face(tmp_path):
    video, tracks, transcript = talking_heads(
        tmp_path / "v.mp4", [Head("A", 60, [(0.5, 2.0), (4.5, 5.5)]), Head("B", 360, [(2.5, 4.0)])], 7.0,
        off_screen=[("narrator", 5.8, 6.8)])
    links = run_link(video, tracks, transcript)
    assert {link.voice: link.track_id for link in links.links} == {"A": 1, "B": 2, "narrator": None}


def test_two_people_speaking_at_once(tmp_path):
    video, tracks, transcript = talking_heads(
        tmp_path / "v.mp4", [Head("A", 40, [(0.5, 3.0), (5.0, 6.0)]), Head("B", 380, [(2.0, 4.5), (6.5, 7.5)],
                                                                            tint=(1.1, 0.9, 0.8))], 8.0)
    links = run_link(video, tracks, transcript)
    assert {link.voice: link.track_id for link in links.links} == {"A": 1, "B": 2}
    overlapping = [u for u in links.attributions if u.start_s in (0.5, 2.0)]
    assert [u.track_id for u in overlapping] == [1, 2]
    assert links.person_of_track == {1: 1, 2: 2}


def test_track_visible_only_briefly(tmp_path):
    video, tracks, transcript = talking_heads(
        tmp_path / "v.mp4", [Head("A", 40, [(0.5, 2.0), (3.5, 5.0)]),
                             Head("B", 380, [(2.2, 3.2)], visible=(2.0, 3.4))], 6.0)
    links = run_link(video, tracks, transcript)
    assert {link.voice: link.track_id for link in links.links} == {"A": 1, "B": 2}
    silent_visitor = talking_heads(tmp_path / "w.mp4", [Head("A", 40, [(0.5, 2.0), (3.5, 5.0)]),
                                                        Head("B", 380, [], visible=(2.0, 2.8))], 6.0)
    links = run_link(*silent_visitor)
    assert {link.voice: link.track_id for link in links.links} == {"A": 1}


def test_video_with_one_person(tmp_path):
    video, tracks, transcript = talking_heads(tmp_path / "v.mp4", [Head("SPEAKER_00", 200, [(0.5, 1.5), (2.5, 4.0)])],
                                              5.0)
    (link,) = run_link(video, tracks, transcript).links
    assert link.track_id == 1 and link.display_name is None and 0 < link.confidence <= 1


def test_no_faces_leaves_every_voice_unlinked(tmp_path, tiny_video):
    from socialpipe.pipeline.contracts.artifacts import Tracks, Transcript, Utterance

    transcript = Transcript.from_utterances([Utterance(0.2, 1.0, "A", "hi")])
    (link,) = run_link(tiny_video, Tracks.empty(fps=10.0), transcript).links
    assert link.track_id is None


def test_mouth_box_without_landmarks_uses_the_lower_face():
    box = mouth_box([100, 100, 200, 220], None)
    assert box[1] > 160 and box[3] <= 220 and box[0] > 100 and box[2] < 200


@pytest.mark.parametrize("min_score", [0.95])
def test_a_high_threshold_leaves_voices_unlinked(min_score):
    transcript = load_transcript(SAMPLE_TRANSCRIPT)
    links = run_link(SAMPLE_VIDEO, load_tracks(SAMPLE_TRACKS, fps=None), transcript, min_score=min_score)
    assert all(link.track_id is None for link in links.links)


def test_one_voice_on_two_faces_follows_whichever_face_speaks():
    """The diarization merged two people into one long utterance: with ``correct`` the utterance is cut into
    stretches owned by the face the network finds speaking; without, one track holds it all."""
    import numpy as np

    from socialpipe.pipeline.contracts.artifacts import SpeakerLink, SpeakerLinks, Transcript, Utterance
    from socialpipe.stages.link.decision import attribute_utterances
    from socialpipe.stages.link.evidence import SpeakingEvidence

    steps = 250  # 10 s at 25 fps: face 1 speaks 0-4 s and 7-10 s, face 2 speaks 4-7 s
    logits = np.full((2, steps), -3.0, np.float32)
    logits[0, :100], logits[0, 175:], logits[1, 100:175] = 3.0, 3.0, 3.0
    grid = SpeakingEvidence([1, 2], logits)
    transcript = Transcript.from_utterances([Utterance(0.0, 10.0, "V", "a long merged turn")])
    seen = np.ones((2, steps), bool)
    (merged,) = attribute_utterances(transcript, grid, seen, {"V": [1, 2]}, {"V": 1}, correct=True)
    assert [(p.track_id, round(p.start_s, 1), round(p.end_s, 1)) for p in merged.segments] == \
        [(1, 0.0, 4.0), (2, 4.0, 7.0), (1, 7.0, 10.0)]
    links = SpeakerLinks((SpeakerLink("V", 1, track_ids=(1, 2)),), {}, (merged,))
    tracks = Tracks.from_rows([{"track_id": t, "frame_index": 0, "xyxy": [0, 0, 10, 10]} for t in (1, 2)], fps=25.0)
    assert links.track_at("V", 0, tracks, 5.0) == 2 and links.track_at("V", 0, tracks, 8.0) == 1
    (plain,) = attribute_utterances(transcript, grid, seen, {"V": [1, 2]}, {"V": 1}, correct=False)
    assert plain.track_id == 1 and plain.segments == () and "segments" not in plain.to_json()
    cut = seen.copy()
    cut[:, 200:] = False  # a cut at 8 s to a shot in which neither face is seen
    unseen = logits.copy()
    unseen[:, 200:] = np.nan
    (after_cut,) = attribute_utterances(transcript, SpeakingEvidence([1, 2], unseen), cut, {"V": [1, 2]}, {"V": 1},
                                        correct=True)
    assert [(p.track_id, round(p.start_s, 1), round(p.end_s, 1)) for p in after_cut.segments] == \
        [(1, 0.0, 4.0), (2, 4.0, 7.0), (1, 7.0, 8.0)]


def test_a_face_never_seen_while_a_voice_speaks_is_not_judged_silent():
    """With ``min_seen_s`` 0 every voice row counts, including voices during which the face was never seen
    (no share): those say nothing about the face, the others decide."""
    from socialpipe.stages.link.decision import asd_says_silent
    from socialpipe.stages.link.evidence import VoiceEvidence

    evidence = [[VoiceEvidence(0, None, None, None), VoiceEvidence(30, 0.05, None, 0.05)]]
    settings = LinkConfig(min_seen_s=0.0, silent_share=0.1)
    assert asd_says_silent(evidence[0], settings)
    assert not asd_says_silent([VoiceEvidence(0, None, None, None)], settings)


def test_a_few_steps_seen_while_another_voice_speaks_do_not_cancel_a_whole_line():
    """Friends: a shot opens 0.08 s before the previous voice's turn ends; the speaker of the next line, seen on
    those 2 steps "speaking while another voice speaks" and on all 37 of her own line, lost the voice (margin
    1.0 - 1.0). Under ``link.min_seen_s`` the share while others speak is unknown (None, counting 0); from it on
    it counts, and a face speaking through everyone's speech is no evidence."""
    import numpy as np

    from socialpipe.stages.link.evidence import SpeakingEvidence, voice_evidence

    settings = LinkConfig()  # min_seen_s 0.5: 12.5 steps at 25 fps
    speaking = np.zeros((2, 60))
    speaking[0, :20] = 1.0  # voice A
    speaking[1, 20:] = 1.0  # voice B
    for shot_start, otherwise in ((18, None), (5, 1.0)):
        logits = np.full((1, 60), np.nan, np.float32)
        logits[0, shot_start:] = 3.0  # the face speaks on every step it is seen
        (a, b), = voice_evidence(SpeakingEvidence([1], logits), speaking, settings)
        assert (b.seen_steps, b.speaking_share, b.seen_steps_otherwise) == (40, 1.0, 20 - shot_start)
        assert b.speaking_share_otherwise == otherwise
        assert b.qualifies(settings) is (otherwise is None)
        assert (a.speaking_share_otherwise, a.margin) == (1.0, 0.0)  # seen speaking through all 40 of B's steps
        assert not a.qualifies(settings)


def test_a_talker_seen_in_two_shots_gets_both_tracks_and_the_close_up_listener_none():
    """The second sample: cuts between wide shots and close-ups; Bob talks for 10 s in his close-up and answers
    in the last wide shot; Carol smiles and nods without speaking. Default settings (LR-ASD, then mouth activity:
    the faces are drawn). Bob's silent first shot needs appearance grouping, which the stage does not do."""
    from tests.conftest import REPO

    shots = REPO / "sample_videos" / "shots"
    tracks, transcript = load_tracks(shots.with_suffix(".tracks.json"), fps=None), load_transcript(shots.with_suffix(".transcript.json"))
    links = {link.voice: link for link in LinkStage(LinkConfig()).link(probe(shots.with_suffix(".mp4")), tracks,
                                                                         transcript).links}
    truth = {link.voice: set(link.track_ids) for link in load_links(shots.with_suffix(".links.json")).links}
    speaking_shots = {4, 7}  # Bob's close-up and his track in the last wide shot
    assert speaking_shots < truth["Bob"] and set(links["Bob"].track_ids) == speaking_shots
    assert links["Bob"].evidence["tracks"]["7"] == "mouth activity (the same person in another shot)"
    linked = {t for link in links.values() for t in link.track_ids}
    assert 5 not in linked, "Carol's close-up, smiling and nodding while Alice speaks off screen"


def test_a_voice_takes_every_shot_of_the_person_it_speaks_from():
    """Face identity says tracks 1 and 3 are one person (two shots) and so is 4, which is on screen together with
    1 (an identity error the link stage does not follow); 2 is someone else."""
    import numpy as np

    from socialpipe.stages.link.decision import Ownership, own_by_identity, persons_of_tracks

    seen = np.zeros((4, 20), bool)
    seen[0, :10] = seen[1, :10] = seen[2, 10:] = seen[3, :5] = True  # rows: tracks 1, 2, 3, 4
    found = Ownership({"V": [1], "W": []})
    found.how["V", 1] = "active speaker"
    own_by_identity(found, {1: 1, 2: 2, 3: 1, 4: 1}, [1, 2, 3, 4], seen)
    assert found.owners == {"V": [1, 3], "W": []}
    assert found.how["V", 3] == "face identity (the same person in another shot)"
    persons = persons_of_tracks(found.owners, ["V", "W"], [1, 2, 3, 4], {1: 1, 2: 2, 3: 1, 4: 1})
    assert persons[1] == persons[3] == persons[4] != persons[2]


def test_one_wrong_call_in_a_wide_shot_does_not_give_a_voice_every_close_up_of_someone_else():
    """The Big Bang Theory opening: Leonard's voice W was found speaking from Sheldon's small face in the wide shot
    (track 3, 0.5 s), while Sheldon's voice V speaks 4 s from his close-ups 1 and 2. W keeps the wide-shot track its
    own evidence gave it, but not Sheldon's close-ups (where he would be boxed for Leonard's lines off screen), and
    the evidence says why. A person that speaks for two voices about as much (one person heard as two voices)
    still gives both voices all its tracks."""
    import numpy as np

    from socialpipe.stages.link.decision import Ownership, identity_claims, own_by_identity
    from socialpipe.stages.link.evidence import VoiceEvidence

    face_ids = [1, 2, 3, 4]
    seen = np.zeros((4, 200), bool)
    seen[0, :50] = seen[1, 50:100] = seen[2, 100:150] = seen[3, 150:] = True  # one shot each
    persons = {1: 1, 2: 1, 3: 1, 4: 2}  # 1-3 Sheldon, 4 Leonard
    silent = VoiceEvidence(0, None, None, None)

    def evidence(v_steps, w_steps):
        return [VoiceEvidence(v_steps[i], 1.0, None, 1.0) if v_steps[i] else silent for i in range(4)], \
            [VoiceEvidence(w_steps[i], 1.0, None, 1.0) if w_steps[i] else silent for i in range(4)]

    def linked(v_steps, w_steps, v_tracks, w_tracks):
        columns = evidence(v_steps, w_steps)
        rows = [[columns[0][t], columns[1][t]] for t in range(4)]
        found = Ownership({"V": [], "W": []})
        for voice, tracks in (("V", v_tracks), ("W", w_tracks)):
            for t in tracks:
                found.give(voice, t, "active speaker")
        own_by_identity(found, persons, face_ids, seen, identity_claims(found, persons, face_ids, ["V", "W"], rows))
        return found

    wrong_call = linked([50, 50, 0, 0], [0, 0, 12, 40], [1, 2], [3, 4])
    assert wrong_call.owners == {"V": [1, 2, 3], "W": [3, 4]}
    assert wrong_call.not_followed["W"] == [
        "tracks 1, 2 (face identity: the person of track 3): that person speaks 4.0 s for V, 0.5 s for this voice"]
    split = linked([50, 0, 0, 0], [0, 40, 0, 0], [1], [2])  # one person, two voices, each from one shot
    assert split.owners == {"V": [1, 2, 3], "W": [2, 1, 3]} and not split.not_followed


def test_a_voice_merged_from_two_people_makes_its_main_face_its_person():
    """The talk show cut into a longer video: the host's voice V speaks 8 s from her two close-ups (tracks 1 and 3,
    which face identity did not join) and 2 s from the guest's close-up 2, which identity joined with the guest's
    other shot 4. The host's tracks become one person and the guest's another: V's person is the face it speaks
    from most, not the first one face identity placed. A voice that speaks as much from an identity person
    as from a track without one (Joey's close-up 1 and his profile 2, one person with 4) joins them."""
    import numpy as np

    from socialpipe.stages.link.decision import Ownership, persons_of_tracks, strongest_first
    from socialpipe.stages.link.evidence import VoiceEvidence

    face_ids = [1, 2, 3, 4]
    seen = np.zeros((4, 400), bool)
    seen[0, :100] = seen[1, 100:150] = seen[2, 150:250] = seen[3, 250:] = True
    identity = {1: 1, 2: 2, 3: 3, 4: 2}
    silent = VoiceEvidence(0, None, None, None)

    def persons(steps, owned):
        found = Ownership({"V": []})
        for t in owned:  # in the order the link rules gave them
            found.give("V", t, "active speaker")
        evidence = [[VoiceEvidence(steps[i], 1.0, None, 1.0) if steps[i] else silent] for i in range(4)]
        return persons_of_tracks(strongest_first(found, face_ids, ["V"], evidence, identity), ["V"], face_ids,
                                 identity, seen)

    merged = persons([100, 50, 100, 0], (2, 1, 3))
    assert merged[1] == merged[3] != merged[2] == merged[4]
    tie = persons([50, 50, 0, 0], (1, 2))  # 3: not the voice's, a person of its own
    assert tie[1] == tie[2] == tie[4] != tie[3]


def test_a_small_face_plainly_speaking_among_others_goes_to_the_voice():
    """Track 3 (a small face in a two-shot) speaks on 35% of V's speech, under min_speaking_share, while track 4
    beside it speaks on 10%: it is the one speaking and goes to V. Track 5, alone on screen at 35%, has no face
    to be compared with and stays free; so does 6, beside a face that speaks as often."""
    import numpy as np

    from socialpipe.stages.link.decision import Ownership, own_by_comparison
    from socialpipe.stages.link.evidence import VoiceEvidence

    face_ids = [1, 3, 4, 5, 6, 7]
    seen = np.zeros((6, 100), bool)
    seen[0, :20] = True  # track 1: V's close-up, owned by V already
    seen[1, 20:60] = seen[2, 20:60] = True  # 3 and 4 together
    seen[3, 60:80] = True  # 5 alone
    seen[4, 80:] = seen[5, 80:] = True  # 6 and 7 together
    share = {1: 0.9, 3: 0.35, 4: 0.1, 5: 0.35, 6: 0.35, 7: 0.3}
    evidence = [[VoiceEvidence(20, share[t], None, share[t])] for t in face_ids]
    found = Ownership({"V": [1]})
    found.how["V", 1] = "active speaker"
    own_by_comparison(found, evidence, face_ids, ["V"], seen, LinkConfig())
    assert found.owners == {"V": [1, 3]}
    assert found.how["V", 3] == "active speaker (the one speaking of the faces on screen)"
    strict = Ownership({"V": [1]})
    own_by_comparison(strict, evidence, face_ids, ["V"], seen, LinkConfig(min_speaking_share_among=0.4))
    assert strict.owners == {"V": [1]}


def test_an_unlinked_voice_says_the_true_reason():
    """The reason names what failed: no face on screen, a face seen too briefly (the 0.44 s case), none speaking
    often enough, or one speaking as often while other voices speak."""
    from socialpipe.pipeline.contracts.config import LinkConfig
    from socialpipe.stages.link.decision import unlinked_reason
    from socialpipe.stages.link.evidence import VoiceEvidence

    settings = LinkConfig()
    unseen = VoiceEvidence(0, None, None, None)
    assert "no face is on screen" in unlinked_reason([unseen, unseen], [1, 2], settings)
    brief = VoiceEvidence(11, 1.0, 0.0, 1.0)  # 0.44 s at 25 steps a second
    assert unlinked_reason([unseen, brief], [1, 2], settings) == (
        "unlinked: faces are on screen for 0.44 s at most while this voice speaks alone (link.min_seen_s 0.5 s)")
    quiet = VoiceEvidence(50, 0.1, 0.0, 0.1)
    assert "the most, track 7, speaks on 10% of its 2.0 s (link.min_speaking_share 40%)" in \
        unlinked_reason([quiet], [7], settings)
    always = VoiceEvidence(50, 0.9, 0.8, 0.1)
    assert "about as often while other voices speak (margin 0.10, link.min_margin 0.2)" in \
        unlinked_reason([always], [7], settings)


def test_two_drawn_people_heard_as_one_voice_are_told_apart_by_their_mouths():
    """The sample's Alice and Carol given as one voice (a real-speech embedding hears espeak's voices as one):
    the mouths show a second face speaking part of it, so the voice owns both faces, the disagreement is said,
    and every utterance (and each part of an utterance in which both speak) follows the face speaking."""
    from socialpipe.pipeline.contracts.artifacts import Transcript, Utterance

    truth = load_transcript(SAMPLE_TRANSCRIPT)
    merged = Transcript.from_utterances([Utterance(u.start_s, u.end_s, "V" if u.speaker in ("Alice", "Carol")
                                                   else u.speaker, u.text) for u in truth.utterances])
    tracks = load_tracks(SAMPLE_TRACKS, fps=None)
    links = run_link(SAMPLE_VIDEO, tracks, merged)
    v = next(link for link in links.links if link.voice == "V")
    assert set(v.track_ids) == {1, 3}, v.evidence
    assert v.evidence["tracks"]["3"].startswith("mouth activity (a second face")
    assert any(d["kind"] == "one voice on two faces seen together" for d in v.evidence["disagreements"])
    assert links.person_of_track[1] != links.person_of_track[3]
    owner = {"Alice": 1, "Carol": 3}
    checked = 0
    for u in truth.utterances:
        if u.speaker in owner:
            middle = (u.start_s + u.end_s) / 2
            frame = int(middle * 25)
            assert links.track_at("V", frame, tracks, middle) == owner[u.speaker], (u.speaker, u.start_s)
            checked += 1
    assert checked == 7


def test_a_second_face_is_only_taken_by_mouth_where_the_mouths_are_plain():
    """The rule's edges: a free face wins an utterance by MOUTH_SPEAKS with MOUTH_MARGIN while the voice's own
    face is seen; not when the margin is too small, when the face is another voice's, or when the network
    linked the voice (it judges real faces itself)."""
    import numpy as np

    from socialpipe.pipeline.contracts.artifacts import Transcript, Utterance
    from socialpipe.stages.link.decision import BY_MOUTH, ACTIVE_SPEAKER, Ownership, own_second_faces_by_mouth
    from socialpipe.stages.link.evidence import VoiceEvidence

    steps = 150  # 6 s: V speaks 0-3 s from face 1, 3-6 s from face 2; face 3 listens
    mouths = np.full((3, steps), -1.0, np.float32)
    mouths[0, :75], mouths[1, 75:] = 2.0, 2.5
    transcript = Transcript.from_utterances([Utterance(0.0, 3.0, "V", "one"), Utterance(3.0, 6.0, "V", "two")])
    seen = np.ones((3, steps), bool)
    evidence = [[VoiceEvidence(0, None, None, None)] for _ in range(3)]

    def outcome(mouths, how=BY_MOUTH, others=None):
        found = Ownership({"V": [], "W": []})
        found.give("V", 1, how)
        for voice, track in (others or {}).items():
            found.give(voice, track, BY_MOUTH)
        own_second_faces_by_mouth(found, mouths, transcript, [1, 2, 3], seen, evidence, LinkConfig())
        return found.owners["V"]

    assert outcome(mouths) == [1, 2]
    weak = mouths.copy()
    weak[1, 75:] = -0.2 + 1.0  # 0.8: under MOUTH_SPEAKS
    assert outcome(weak) == [1]
    close = mouths.copy()
    close[2, 75:] = 1.8  # the listener's mouth moves nearly as much: no plain winner
    assert outcome(close) == [1]
    assert outcome(mouths, others={"W": 2}) == [1]
    assert outcome(mouths, how=ACTIVE_SPEAKER) == [1]


def test_utterances_of_a_voice_linked_by_mouth_follow_the_mouths_not_the_network():
    """For a voice the mouth fallback linked, the network's scores (unreliable on those faces) do not pick the
    face; the mouths do, moment by moment. The score given is still the network's."""
    import numpy as np

    from socialpipe.pipeline.contracts.artifacts import Transcript, Utterance
    from socialpipe.stages.link.decision import attribute_utterances
    from socialpipe.stages.link.evidence import SpeakingEvidence

    steps = 250
    network = SpeakingEvidence([1, 2], np.stack([np.full(steps, -1.0), np.full(steps, 1.0)]).astype(np.float32))
    mouth = np.full((2, steps), -1.0, np.float32)
    mouth[0, :100], mouth[1, 100:] = 2.0, 2.0
    mouths = SpeakingEvidence([1, 2], mouth)
    transcript = Transcript.from_utterances([Utterance(0.0, 10.0, "V", "a merged turn")])
    seen = np.ones((2, steps), bool)
    (judged,) = attribute_utterances(transcript, network, seen, {"V": [1, 2]}, {"V": 1}, True, mouths,
                                     frozenset({"V"}))
    assert [(p.track_id, round(p.start_s, 1), round(p.end_s, 1)) for p in judged.segments] == \
        [(1, 0.0, 4.0), (2, 4.0, 10.0)]
    assert judged.score == 1.0  # the network's mean on the face chosen (face 2: the mouths speak more overall)
    (by_network,) = attribute_utterances(transcript, network, seen, {"V": [1, 2]}, {"V": 1}, True, mouths)
    assert by_network.track_id == 2 and {p.track_id for p in by_network.segments} == {2}


def test_a_voice_linked_in_the_wide_shot_also_gets_its_lone_close_up_unless_the_faces_are_two_people():
    """A talk-show host: the voice went to the host's small face in the wide shot (track 1); the host's close-up
    in the next shot (track 2, alone on screen) speaks through the voice and through the voice the diarization
    split off, so it fails the margin test. It joins the voice: never on screen with track 1, and face identity
    does not say it is someone else. When identity says two people, or the two are seen together, it does not."""
    import numpy as np

    from socialpipe.stages.link.decision import Ownership, own_by_lone_face
    from socialpipe.stages.link.evidence import VoiceEvidence

    steps = 100
    speaking = np.zeros((2, steps))
    speaking[0, :60], speaking[1, 60:] = 1, 1
    seen = np.zeros((2, steps), bool)
    seen[0, :30], seen[1, 30:] = True, True  # the wide shot, then the close-up
    wide = [VoiceEvidence(30, 1.0, None, 1.0), VoiceEvidence(0, None, 1.0, None)]
    close = [VoiceEvidence(30, 1.0, 1.0, 0.0), VoiceEvidence(40, 1.0, 1.0, 0.0)]
    settings = LinkConfig()

    def linked(faces=None, seen=seen):
        found = Ownership({"A": [1], "B": []}, {("A", 1): "active speaker"})
        own_by_lone_face(found, [wide, close], [1, 2], ["A", "B"], seen, speaking, settings, faces)
        return found.owners

    assert linked() == {"A": [1, 2], "B": [2]}
    assert linked({2: 7}) == {"A": [1, 2], "B": [2]}  # only the close-up has a face identity: nothing against it
    assert linked({1: 5, 2: 7}) == {"A": [1], "B": [2]}  # face identity: two people
    together = seen.copy()
    together[0, 30:40] = True  # the wide-shot face on screen beside the close-up
    assert linked(seen=together)["A"] == [1]


def test_a_lone_close_up_speaking_through_two_voices_gets_both_and_a_face_among_others_none():
    """The diarization cut one person's speech into two voices heard back to back; the face, alone on screen,
    speaks through both, so neither passes the margin test (it speaks as often while the other voice speaks).
    Alone on screen it takes both voices (said as a split); with another face on screen it takes neither."""
    import numpy as np

    from socialpipe.stages.link.decision import DisagreementKind, Ownership, own_by_lone_face
    from socialpipe.stages.link.evidence import VoiceEvidence

    steps = 100
    speaking = np.zeros((2, steps))
    speaking[0, :50], speaking[1, 50:] = 1, 1
    through = [VoiceEvidence(50, 1.0, 1.0, 0.0), VoiceEvidence(50, 1.0, 1.0, 0.0)]
    unseen = [VoiceEvidence(0, None, None, None)] * 2
    settings = LinkConfig()
    assert not through[0].qualifies(settings)

    found = Ownership({"A": [], "B": []})
    seen = np.zeros((2, steps), bool)
    seen[0] = True
    own_by_lone_face(found, [through, unseen], [1, 2], ["A", "B"], seen, speaking, settings)
    assert found.owners == {"A": [1], "B": [1]}
    assert [(d.kind, d.voices) for d in found.disagreements] == [(DisagreementKind.SPLIT, ("A", "B"))]

    crowded = Ownership({"A": [], "B": []})
    seen[1] = True  # a second face on screen all along
    own_by_lone_face(crowded, [through, unseen], [1, 2], ["A", "B"], seen, speaking, settings)
    assert crowded.owners == {"A": [], "B": []}


def test_the_mouth_fallback_measures_along_the_active_speaker_decode_and_decodes_nothing_itself(tmp_path, monkeypatch):
    """A speaking threshold the network never reaches leaves every voice to the mouth fallback; its frames come
    from the active-speaker model's decode, so a decode of its own fails here."""
    from socialpipe.stages.link import mouth

    def no_second_decode(*args, **kwargs):
        raise AssertionError("the mouth fallback decoded the video again")

    video, tracks, transcript = talking_heads(
        tmp_path / "v.mp4", [Head("A", 60, [(0.5, 2.0), (4.5, 5.5)]), Head("B", 360, [(2.5, 4.0)])], 7.0,
        off_screen=[("narrator", 5.8, 6.8)])
    monkeypatch.setattr(mouth, "stream_frames", no_second_decode)
    links = LinkStage(LinkConfig(speaking_threshold=50.0)).link(probe(video), tracks, transcript)
    assert {link.voice: link.track_id for link in links.links} == {"A": 1, "B": 2, "narrator": None}
    assert [link.evidence["decision"] for link in links.links][:2] == ["linked by mouth activity"] * 2
    assert links.meta["timing_s"]["mouth_s"] > 0


def test_mouths_measured_along_the_active_speaker_decode_equal_a_decode_of_their_own():
    import numpy as np

    from socialpipe.stages.link.mouth import MouthMeter, measure_mouths
    from socialpipe.stages.link.speaking import score_tracks

    video, tracks = probe(SAMPLE_VIDEO), load_tracks(SAMPLE_TRACKS, fps=None)
    meter = MouthMeter(video, tracks, 12.5)
    assert not meter.complete
    score_tracks(video, tracks, watch=meter.see)
    assert meter.complete
    shared, own = meter.activity(), measure_mouths(video, tracks, 12.5)
    assert np.isfinite(own.opening).sum() > 1000
    for name in ("opening", "motion", "activity"):
        np.testing.assert_array_equal(getattr(shared, name), getattr(own, name), err_msg=name)
    np.testing.assert_array_equal(shared.times_s, own.times_s)


def test_the_tracks_a_voice_was_not_given_are_said_in_links_json_and_by_inspect(tmp_path):
    """The reason a voice did not follow a person into other shots is kept in its evidence through links.json,
    and ``socialpipe inspect``'s line for the voice says it."""
    from socialpipe.pipeline.contracts.artifacts import SpeakerLink, SpeakerLinks, load_json
    from socialpipe.pipeline.presentation.report import evidence_line

    why = "tracks 1, 5 (face identity: the person of track 12): that person speaks 4.0 s for V, 0.5 s for this voice"
    link = SpeakerLink("W", 12, track_ids=(3, 12), person_id=2, evidence={
        "decision": "linked by active speaker",
        "candidates": {"12": {"seen_steps": 12, "speaking_share": 1.0, "speaking_share_otherwise": None}},
        "face_identity_not_followed": [why]})
    SpeakerLinks((link,)).save(tmp_path / "links.json")
    back = load_json(SpeakerLinks, tmp_path / "links.json").links[0]
    assert back.evidence["face_identity_not_followed"] == [why]
    assert evidence_line(back) == f"track 12: speaking on 100% of 0.5 s seen; not given {why}"

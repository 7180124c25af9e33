"""Stage 3, link: which on-screen person owns each voice.

- ``scores``: what an active-speaker model gives (per-track speaking scores at 25 fps) and the
  :class:`ActiveSpeakerScorer` protocol; ``scorers``: the registered models (LR-ASD);
- ``speaking`` and ``network``: LR-ASD, fed as its published evaluation feeds it;
- ``evidence``: per track and voice, speaking while the voice speaks against while others do;
- ``mouth``: mouth activity, the fallback where the network has nothing to say;
- ``decision``: the decision itself, as functions of the evidence;
- ``stage``: :class:`LinkStage`, which runs them in order.
"""

from socialpipe.stages.link.mouth import mouth_box
from socialpipe.stages.link.scores import ASD_FPS, ActiveSpeakerScorer, TrackScores
from socialpipe.stages.link.stage import LinkStage

__all__ = ["ASD_FPS", "ActiveSpeakerScorer", "LinkStage", "TrackScores", "mouth_box"]

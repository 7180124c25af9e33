"""One module per pipeline stage (people, speech, link, answer).

A stage imports types from ``pipeline`` and never from another stage; only
``pipeline.orchestrator`` wires stages together. This version ships none yet: the
orchestrator takes each stage's output from a ground-truth file instead.
"""

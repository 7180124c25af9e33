"""``socialpipe.stages``: one module or package per pipeline stage (people, speech, link, answer).

A stage imports the contracts of ``socialpipe.pipeline`` and never another stage; only the
orchestrator, the CLI, the evaluation and the report put stages together (``tests/test_layers.py``
checks this).
"""

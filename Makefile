# The README's two commands. PYTHON picks the interpreter that builds the venv.
PYTHON ?= python3
VENV ?= .venv
SAMPLE = sample_videos/conversation

.PHONY: demo test install

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade "pip>=24"
	$(VENV)/bin/pip install --quiet -e ".[test]"
	touch $@

install: $(VENV)/.installed

# Set up, then run the pipeline on the bundled sample and render the inspection previews.
# Stages 1-3 run on the offline models; the answer stage needs a model (--model), see the README.
demo: install
	$(VENV)/bin/socialpipe run $(SAMPLE).mp4 --out socialpipe_runs/sample --until link
	$(VENV)/bin/socialpipe inspect socialpipe_runs/sample

# Two worker processes, one test file at a time each (pytest-xdist): on a 2-core AVX2 machine the suite took
# 19 min in one process and 16 min in two.
test: install
	$(VENV)/bin/python -m pytest -q -n 2 --dist loadfile

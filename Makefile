# The README's two commands: `make demo` and `make test`, each from a fresh clone.
# TORCH: the torch requirement installed first; this machine has a local CPU wheel of
# 2.13.0 (an unpinned torch would download a multi-GB CUDA build). Elsewhere:
# `make test TORCH=torch` or an existing environment with `pip install -e .`.
PYTHON ?= python3
TORCH ?= torch==2.13.0
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
REFERENCE_PACKAGES := openunmix==1.3.0 demucs==2.0.3 julius==0.2.8
# references that cannot share the venv with demucs 2.0.3: each in its own folder, put on
# sys.path only by its parity tests (tests/references.py)
REFS := .refs
DEMUCS4_PACKAGES := demucs==4.1.0 einops==0.8.2
# audio-separator's roformer modules and what they import (librosa for the mel filter bank),
# at the versions its requirements pin (rotary-embedding-torch < 0.7, beartype < 0.19)
AUDIO_SEPARATOR_PACKAGES := audio-separator==0.47.1 einops==0.8.2 beartype==0.18.5 \
	rotary-embedding-torch==0.6.5 librosa==0.11.0 numba llvmlite lazy_loader decorator \
	audioread pooch msgpack joblib platformdirs

.PHONY: demo test install ffmpeg lint clean

install: $(INSTALLED)

$(INSTALLED): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet "$(TORCH)"
	$(BIN)/pip install --quiet -e ".[test]"
	# reference implementations the parity tests compare against; --no-deps because
	# their declared requirements (torchaudio) have no CPU wheel for this torch
	$(BIN)/pip install --quiet --no-deps $(REFERENCE_PACKAGES)
	rm -rf $(REFS) && mkdir -p $(REFS)
	$(BIN)/pip install --quiet --no-deps --target $(REFS)/demucs4 $(DEMUCS4_PACKAGES)
	$(BIN)/pip install --quiet --no-deps --target $(REFS)/audio_separator \
		$(AUDIO_SEPARATOR_PACKAGES)
	touch $(INSTALLED)

# musdb's stempeg refuses to import without the ffmpeg binary
ffmpeg:
	@command -v ffmpeg >/dev/null 2>&1 || { \
	  echo "installing ffmpeg (needed by musdb)"; \
	  SUDO=$$(test "$$(id -u)" = 0 || echo sudo); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq ffmpeg >/dev/null; }

test: install ffmpeg
	# two workers for two cores; tests of one module share a worker (and its fixtures)
	$(BIN)/python -m pytest -q -n 2 --dist loadscope

# Train a small Open-Unmix on the generated toy set (a few minutes on two CPU cores),
# separate a toy test song with the run's best checkpoint, then score the model on the toy
# test set (BSSEval v4, as museval) beside the mixture as estimate: the summary table ends it.
TOY_TEST_SONG := from sepkit.data.toy import ToyMUSDB; print(ToyMUSDB().test_tracks()[0].mixture)
demo: install ffmpeg
	@RUN=runs/demo/$$(date +%Y-%m-%d_%H-%M-%S); \
	$(BIN)/sepkit train experiment=umx_toy_demo hydra.run.dir=$$RUN && \
	echo "run directory: $$RUN" && \
	SONG=$$($(BIN)/python -c "$(TOY_TEST_SONG)") && \
	$(BIN)/sepkit separate "$$SONG" checkpoint=$$RUN out_dir=$$RUN name=separated && \
	echo "stems of $$SONG: $$RUN/separated/" && \
	$(BIN)/sepkit eval checkpoint=$$RUN dataset=toy workers=2 out_dir=$$RUN/eval

lint: install
	$(BIN)/ruff check sepkit tests benchmarks
	$(BIN)/ruff format --check sepkit tests benchmarks

clean:
	rm -rf $(VENV) $(REFS) build *.egg-info

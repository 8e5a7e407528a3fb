# SotaiGenerator. `make demo` and `make test` work on a fresh clone (Python 3.11, CPU).
PYTHON   ?= python3.11
VENV     ?= .venv
PY       := $(VENV)/bin/python
SOTAI    := $(VENV)/bin/sotai
PROFILE  ?= tiny
TARGET   ?= cpu
STAMP    := $(VENV)/.sotai-installed

.PHONY: venv demo test export serve gateway bench bench-load real-snapshots real-export clean

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

# Real-architecture snapshots with random weights (SDXL 6.5 GB, Dart 0.3 GB; about 2 minutes, peak RSS
# 5.3 GiB), then the real-size export from them: `make real-export`.
REAL_DIR ?= models/real
real-snapshots: venv
	$(SOTAI) snapshot write cagliostrolab/animagine-xl-3.0 --dest $(REAL_DIR)/cagliostrolab/animagine-xl-3.0
	$(SOTAI) snapshot write p1atdev/dart-v2-moe-sft --dest $(REAL_DIR)/p1atdev/dart-v2-moe-sft

# The real-size export from those snapshots, into its own models dir (never models/animagine), then one
# 1024x1024 image from Japanese through the sotai ensemble in the embedded Triton. Figures: bench/README.md.
REAL_MODELS ?= models/real-export
real-export: venv
	SOTAI_MODELS_DIR=$(REAL_MODELS) SD_MODEL_PATH=$(REAL_DIR)/cagliostrolab/animagine-xl-3.0 \
	DART_MODEL_PATH=$(REAL_DIR)/p1atdev/dart-v2-moe-sft $(SOTAI) export --profile animagine --target $(TARGET)
	$(PY) bench/real_size.py $(REAL_MODELS)/animagine/repository --size 1024 --steps 1

clean:
	rm -rf models/tiny models/_test out

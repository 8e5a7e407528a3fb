# SotaiGenerator. `make demo` and `make test` work on a fresh clone (Python 3.11, CPU).
PYTHON   ?= python3.11
VENV     ?= .venv
PY       := $(VENV)/bin/python
SOTAI    := $(VENV)/bin/sotai
PROFILE  ?= tiny
TARGET   ?= cpu
STAMP    := $(VENV)/.sotai-installed

.PHONY: venv demo test export serve gateway bench bench-load clean

# torch==2.13.0 first: it resolves to the CPU wheel on this disk; an unpinned torch would pull GBs of CUDA.
$(STAMP): requirements.lock pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -r requirements.lock
	# text2tags-lib only carries the embedded tag list; its llama-cpp dependency is not used.
	$(PY) -m pip install --quiet --no-deps text2tags-lib==0.0.7
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

clean:
	rm -rf models/tiny models/_test out

# The two commands a newcomer needs: `make demo` and `make test` (and `make bench`).
# All create .venv on first use: torch==2.13.0 first (the CPU build), then the project.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed
export PREFECT_SERVER_ANALYTICS_ENABLED := false

.PHONY: demo test bench venv clean

$(INSTALLED): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(INSTALLED)

venv: $(INSTALLED)

demo: $(INSTALLED)
	$(PY) deployments/demo.py

test: $(INSTALLED)
	$(PY) -m pytest

# Measures the plugin against plain Optuna and the hardware; writes benchmarks/results/latest.json.
bench: $(INSTALLED)
	$(PY) -m benchmarks.run

clean:
	rm -rf $(VENV) .intermission

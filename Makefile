# The two commands a newcomer needs: `make demo` and `make test` (and `make bench`).
# All create .venv on first use: torch==2.13.0 first (the CPU build) and the newest Prefect 3,
# then the project, which must leave that Prefect as it is. `make test-floor` tests the oldest
# release of every dependency range in a virtualenv of its own, .venv-floor.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed
export PREFECT_SERVER_ANALYTICS_ENABLED := false

.PHONY: demo test check test-floor bench venv clean docs docs-serve docs-reference docs-screenshots

$(INSTALLED): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0 'prefect<4'
	.ci/install-keeping-prefect $(PY) -e '.[test]'
	touch $(INSTALLED)

venv: $(INSTALLED)

demo: $(INSTALLED)
	$(PY) deployments/demo.py

test: $(INSTALLED)
	$(PY) -m pytest

# The developer's quicker loop: tests/unit (no server) and tests/integration (a server, no
# worker). `make test` runs everything, tests/e2e too.
check: $(INSTALLED)
	$(PY) -m pytest tests/unit tests/integration

# The floors: the oldest release of each range (.ci/floor-constraints.txt), Prefect and torch
# installed first, then the project from its wheel (not editable), as a user installs it; then
# the tests of the pause/resume path through a real server and worker: the UI's Pause and the
# study's suspension, resume, the UI pause's timeout (a scheduled resume), the crash cases, the
# Lightning and Transformers pauses, the run form's block picker, and Prefect's private names.
FLOOR_VENV := .venv-floor
FLOOR_PY := $(FLOOR_VENV)/bin/python
FLOOR_CONSTRAINTS := .ci/floor-constraints.txt
FLOOR_INSTALLED := $(FLOOR_VENV)/.installed
FLOOR_TESTS := \
	tests/integration/test_prefect_internals.py \
	tests/integration/test_transformers.py \
	tests/e2e/test_pause_resume.py::test_paused_and_resumed_twice_matches_an_uninterrupted_run \
	tests/e2e/test_pause_resume.py::test_the_timeout_typed_in_the_ui_pause_dialog_resumes_the_run_by_itself \
	tests/e2e/test_crash_recovery.py \
	tests/e2e/test_lightning_demo.py \
	tests/e2e/test_transformers_demo.py \
	tests/e2e/test_run_form.py

$(FLOOR_INSTALLED): pyproject.toml $(FLOOR_CONSTRAINTS)
	rm -rf $(FLOOR_VENV)
	$(PYTHON) -m venv $(FLOOR_VENV)
	$(FLOOR_PY) -m pip install --quiet --upgrade pip
	$(FLOOR_PY) -m pip install --quiet torch prefect -c $(FLOOR_CONSTRAINTS)
	touch $(FLOOR_INSTALLED)

test-floor: $(FLOOR_INSTALLED)
	rm -rf build/floor-wheel
	$(FLOOR_PY) -m pip wheel --quiet --no-deps --wheel-dir build/floor-wheel .
	$(FLOOR_PY) -m pip uninstall --quiet --yes prefect-intermission
	.ci/install-keeping-prefect $(FLOOR_PY) "$$(ls build/floor-wheel/*.whl)[test]" -c $(FLOOR_CONSTRAINTS)
	cd /tmp && $(CURDIR)/$(FLOOR_PY) -c 'import prefect_intermission, sys; \
		assert "site-packages" in prefect_intermission.__file__, prefect_intermission.__file__'
	$(FLOOR_PY) -m pip list 2>/dev/null | grep -iE '^(prefect|torch|optuna|lightning|transformers|accelerate|peft) '
	$(FLOOR_PY) -m pytest $(FLOOR_TESTS)

# Measures the plugin against plain Optuna and the hardware; writes benchmarks/results/latest.json.
bench: $(INSTALLED)
	$(PY) -m benchmarks.run

# The documentation site (mkdocs-material, mkdocstrings): its tools in a virtualenv of their own,
# .venv-docs, from docs/requirements.txt; the reference is read from the sources (griffe), so the
# build needs neither the package's dependencies nor a server. `--strict`: a broken link, anchor
# or reference fails it. The generated pages (CLI, settings, flow parameters) and the pictures are
# committed: `make docs-reference` and `make docs-screenshots` (a local stack) write them again.
DOCS_VENV := .venv-docs
DOCS_INSTALLED := $(DOCS_VENV)/.installed
export NO_MKDOCS_2_WARNING := 1

$(DOCS_INSTALLED): docs/requirements.txt
	$(PYTHON) -m venv $(DOCS_VENV)
	$(DOCS_VENV)/bin/pip install --quiet -r docs/requirements.txt
	touch $(DOCS_INSTALLED)

docs: $(DOCS_INSTALLED)
	$(DOCS_VENV)/bin/mkdocs build --strict

docs-serve: $(DOCS_INSTALLED)
	$(DOCS_VENV)/bin/mkdocs serve --strict

docs-reference: $(INSTALLED)
	PYTHONPATH=plugins $(PY) docs/gen_reference.py

docs-screenshots: $(INSTALLED)
	$(PY) docs/screenshots.py

clean:
	rm -rf $(VENV) $(FLOOR_VENV) $(DOCS_VENV) site .intermission

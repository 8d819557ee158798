# One command for the tests: `make test`. It creates and reuses the virtualenvs it needs.
# Debian packages it expects are installed by .ci/run (see README, "Running the tests").

PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
COMPAT_VENV ?= .venv-compat
PYTEST_ARGS ?=

.PHONY: test venv compat-venv lint test-sqlite test-mariadb test-compat services clean demo

test: lint test-sqlite test-mariadb test-compat

$(VENV)/.installed: setup.py
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test]"
	touch $@

venv: $(VENV)/.installed

lint: venv
	$(PY) -m ruff check labxblock tests benchmarks

# Keystone + Heat live in a virtualenv of their own, built once and reused.
services: venv
	$(PY) -m tests.services.openstack_rig install

# The whole suite on SQLite, with every real service.
test-sqlite: venv services
	$(PY) -m pytest $(PYTEST_ARGS)

# What depends on the database engine (locking, constraints, raw columns) again on MariaDB.
test-mariadb: venv
	LABXBLOCK_TEST_DB=mariadb $(PY) -m pytest -m mariadb $(PYTEST_ARGS)

# The oldest supported pair: Python 3.12 with Django 4.2, on the database and unit tests.
$(COMPAT_VENV)/.installed: setup.py
	$(PY) -c "from tests.integration.test_packaging import find_python as f; print(f('3.12'))" > .compat-python
	"$$(cat .compat-python)" -m venv $(COMPAT_VENV)
	$(COMPAT_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(COMPAT_VENV)/bin/python -m pip install --quiet -e ".[test]" "Django>=4.2,<5.0"
	rm -f .compat-python
	touch $@

compat-venv: $(COMPAT_VENV)/.installed

test-compat: compat-venv
	$(COMPAT_VENV)/bin/python -m pytest tests/unit -m "not slow" $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) $(COMPAT_VENV) build dist *.egg-info test-artifacts

# The one-command demo (docs/quickstart.md): workbench, worker, beat, gateway and a local lab.
demo:
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet -e ".[demo]"
	$(VENV)/bin/labxblock demo

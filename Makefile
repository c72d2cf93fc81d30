# The lab's commands. Each creates .venv and installs the project on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(abspath $(VENV))/bin
STAMP := $(VENV)/.installed-stamp
# nbgrader shells out to alembic: the venv's bin/ must be on PATH, as in an activated venv.
export PATH := $(BIN):$(PATH)

.PHONY: install run test test-fast lab release clean

install: $(STAMP)

# constraints.txt holds the versions the lab was tested with; pyproject.toml only the ranges.
$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[test,cluster]'
	touch $(STAMP)

run: $(STAMP)  ## execute every solution notebook (quick profile) and print the summary
	$(BIN)/course-lab run

test: $(STAMP)  ## the whole test suite, notebooks included
	$(BIN)/python -m pytest

test-fast: $(STAMP)  ## unit tests only: no notebook execution, no autograding, no browser
	$(BIN)/python -m pytest -m "not notebook and not grading and not browser"

lab: $(STAMP)  ## open the student release in JupyterLab; prints the address and the folder
	@$(BIN)/course-lab lab

release: $(STAMP)  ## regenerate labs/lab4 from solutions/lab4 with nbgrader
	$(BIN)/course-lab release

clean:
	rm -rf build dist

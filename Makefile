# One command each: make demo | test | lint | bench. Each creates .venv and installs what it needs.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint typecheck unit bench lock clean docs-img

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -c constraints.txt "pip==26.3"
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[s3,query,view,fast-jxl,color,ray]" --group test --group typing --group lint
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m imagelog.demo runs/demo

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest

test: lint typecheck unit

bench: $(STAMP)
	$(BIN)/python -m pip install -q -c constraints.txt --group bench
	$(BIN)/python -m bench $(BENCH_ARGS)

# the README's screenshots of `imagelog view`, made by the browser tests (needs chromium)
docs-img: $(STAMP)
	VIEW_SCREENSHOTS_TO=docs/img $(BIN)/pytest tests/viewer/test_browser.py -k readme -q

lock: $(STAMP)
	$(BIN)/python -m pip freeze --exclude-editable | sed '1i # Pinned versions that `make` installs and CI tests (regenerate: make lock).' > constraints.txt
	echo "pip==26.3" >> constraints.txt

clean:
	rm -rf $(VENV) runs .pytest_cache .mypy_cache .ruff_cache

# Two commands for a newcomer: `make demo` and `make test`. Each sets up .venv itself.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: demo test bench generate clean

demo: $(VENV)/.installed  ## run the demo workspace and the exporter (http://127.0.0.1:9877/metrics)
	$(BIN)/serving-exporter demo

test: $(VENV)/.installed  ## run the whole test suite
	$(BIN)/python -m pytest

bench: $(VENV)/.installed  ## side by side: exporter poll vs a naive loop and a real Prometheus, /metrics scrape, RSS (needs prometheus)
	$(BIN)/python bench/bench.py

generate: $(VENV)/.installed  ## regenerate every derived file (tests fail when one is stale)
	$(BIN)/python docs/generate.py
	$(BIN)/python alerts/generate.py
	$(BIN)/python dashboards/build.py
	$(BIN)/python helm/sync.py

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache

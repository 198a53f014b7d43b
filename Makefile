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

.PHONY: demo test bench lint protos clean

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

test: $(STAMP) $(CHECKOV)
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python -m bench

lint: $(STAMP)
	$(BIN)/ruff check collector_ext analyzer tests bench
	$(BIN)/ruff format --check collector_ext analyzer tests bench

# regenerate the committed gRPC stubs of our own .proto files
protos: $(STAMP)
	for dir in collector_ext/gpu collector_ext/keda; do \
	  (cd $$dir && ../../$(BIN)/python -m grpc_tools.protoc -I. --python_out=. --grpc_python_out=. --pyi_out=. *.proto) || exit 1; \
	  sed -i -E 's/^import (\w+_pb2) as/from . import \1 as/' $$dir/*_pb2_grpc.py; \
	done

clean:
	rm -rf $(VENV) agentmeter-data demo-data bench-data bench-results.json .pytest_cache

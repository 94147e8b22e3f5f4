# Headwater developer commands. Everything installs into .venv; nothing global.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
BUF := build/tools/node_modules/.bin/buf
PROTOS := $(wildcard proto/headwater/v1/*.proto)
# The providers' API descriptions (trimmed, with index.yaml) and the collection fields read from them,
# which discovery serves (GET /v1/collections/{id}): the server never reads tests/.
DESCRIPTIONS := tests/upstream-specs
FIELDS := src/headwater/upstream/collection_fields.json
# google/api and google/rpc come from the installed googleapis-common-protos package.
GOOGLEAPIS = $(shell $(PY) -c 'import google.api, os; print(os.path.dirname(os.path.dirname(google.api.__path__[0])))')

.PHONY: install run test fuzz gen check-gen lint bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(VENV)/bin/headwater serve

# The suite runs in TEST_WORKERS processes (pytest-xdist), each taking a whole test file at a time
# (its servers are shared by its tests): most tests wait on servers and clocks, not on the CPU.
# The pacer's tests judge starts to the millisecond, so they run first, on their own.
TEST_WORKERS ?= 3
TIMING_TESTS := tests/test_pacer.py tests/test_shared_budget.py tests/test_budget_windows.py
test: $(STAMP)
	$(PY) -m pytest -q $(TIMING_TESTS) $(PYTEST_ARGS)
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile $(addprefix --ignore=,$(TIMING_TESTS)) $(PYTEST_ARGS)

# A long run of tests/test_fuzz.py (`make test` runs it short): every route, REST and gRPC, sent
# FUZZ_EXAMPLES generated hostile requests each, on SQLite and (with TEST_DATABASE_URL) PostgreSQL.
FUZZ_EXAMPLES ?= 2000
fuzz: $(STAMP)
	HEADWATER_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(PY) -m pytest -q -o timeout=3600 tests/test_fuzz.py $(PYTEST_ARGS)

gen: $(STAMP)
	rm -rf gen/headwater
	mkdir -p gen
	$(PY) -m grpc_tools.protoc -Iproto -I$(GOOGLEAPIS) \
		--python_out=gen --pyi_out=gen --grpc_python_out=gen $(PROTOS)
	touch gen/headwater/v1/__init__.py
	$(PY) -m headwater.rest gen/openapi.json  # the REST bridge's OpenAPI document, from a server's routes
	$(PY) -m headwater.upstream.descriptions $(DESCRIPTIONS) $(FIELDS)  # collections' fields, for discovery

# Fails when gen/ is not what `make gen` would write from proto/.
check-gen: $(STAMP)
	rm -rf build/gen-check && mkdir -p build/gen-check
	$(PY) -m grpc_tools.protoc -Iproto -I$(GOOGLEAPIS) \
		--python_out=build/gen-check --pyi_out=build/gen-check --grpc_python_out=build/gen-check $(PROTOS)
	touch build/gen-check/headwater/v1/__init__.py
	diff -r -x __pycache__ gen/headwater build/gen-check/headwater || (echo 'gen/ is stale: run make gen and commit' >&2; exit 1)
	$(PY) -m headwater.rest build/gen-check/openapi.json
	diff gen/openapi.json build/gen-check/openapi.json || (echo 'gen/openapi.json is stale: run make gen and commit' >&2; exit 1)
	$(PY) -m headwater.upstream.descriptions $(DESCRIPTIONS) build/gen-check/collection_fields.json
	diff $(FIELDS) build/gen-check/collection_fields.json || (echo '$(FIELDS) is stale: run make gen and commit' >&2; exit 1)

$(BUF):
	mkdir -p build/tools
	npm install --silent --no-audit --no-fund --prefix build/tools @bufbuild/buf@1.75.0

lint: $(STAMP) $(BUF)
	rm -rf build/googleapis && mkdir -p build/googleapis/google
	cp -r $(GOOGLEAPIS)/google/api $(GOOGLEAPIS)/google/rpc build/googleapis/google/
	find build/googleapis -type f ! -name '*.proto' -delete
	$(BUF) lint

bench: $(STAMP)
	$(PY) -m bench

clean:
	rm -rf build $(VENV)

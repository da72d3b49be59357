# Every target creates what it needs on first use: a fresh machine needs only Python 3.11+, make, Node.js and Java 17.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-dev
PORT ?= 8090
ARGS ?=

# The timed handlers run on Python 3.13, as Lambda runs them: the first 3.13 found, else $(PYTHON) (the bench says which)
BENCH_PYTHON ?= $(or $(shell for p in python3.13 $(HOME)/.pyenv/versions/3.13*/bin/python3.13; do \
	$$p -c 'import sys; assert sys.version_info[:2] == (3, 13)' 2>/dev/null && echo $$p && break; done),$(PYTHON))
BENCH_VENV := .venv-bench
BENCH_STAMP := $(BENCH_VENV)/.installed

IAC_VENV := .venv-iac
IAC_STAMP := $(IAC_VENV)/.installed
SAM := SAM_CLI_TELEMETRY=0 $(IAC_VENV)/bin/sam

.PHONY: demo test check lint iac build deploy bench chaos model model-reverts hang flood open-loops outage sandbox clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

$(BENCH_STAMP): pyproject.toml
	$(BENCH_PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/pip install --quiet --upgrade pip
	$(BENCH_VENV)/bin/pip install --quiet -e '.[dev]'
	touch $@

$(IAC_STAMP): requirements-iac.txt
	$(PYTHON) -m venv $(IAC_VENV)
	$(IAC_VENV)/bin/pip install --quiet --upgrade pip
	$(IAC_VENV)/bin/pip install --quiet -r requirements-iac.txt
	touch $@

## demo: the whole pipeline locally (moto, DynamoDB Local, Cobalt sandbox, both functions), samples in, outcomes out
##       ARGS="--keep-running" stays up for docdrop status; ARGS="--cobalt-url URL" uses another Cobalt-compatible server
demo: $(STAMP)
	$(BIN)/python -m local.demo $(ARGS)

## test: lint, template checks and build, then every test (the command CI runs): all but tests/iam on every core
##       (pytest-xdist, one test file per worker at a time, so a file's local stack stays its own), then tests/iam,
##       which checks the AWS calls every other test recorded against the deployed policies
TEST_WORKERS ?= auto
test: lint iac build
	$(BIN)/pytest -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder --ignore=tests/iam $(ARGS)
	DOCDROP_AWS_CALLS_KEEP=1 $(BIN)/pytest tests/iam $(ARGS)

## check: the loop while editing: ruff, mypy and every test that needs no local AWS server (marked `stack` by
##        tests/conftest.py), 4 at a time (they mostly wait on sockets); under a minute
CHECK_WORKERS ?= 4
check: lint
	$(BIN)/pytest -n $(CHECK_WORKERS) -m "not stack" -q $(ARGS)

## iac: cfn-lint, sam validate --lint and checkov on template.yaml (skips are justified in the template)
iac: $(IAC_STAMP)
	$(IAC_VENV)/bin/cfn-lint template.yaml
	$(SAM) validate --lint --region us-east-1
	$(IAC_VENV)/bin/checkov --file template.yaml --framework cloudformation --skip-download --quiet --compact

## build: sam build without Docker (BuildMethod: makefile): arm64 python3.13 packages in .aws-sam/
build: $(IAC_STAMP)
	$(SAM) build --region us-east-1

## deploy: the guided deploy with the project's own SAM CLI; a clinic's answers go to samconfig.local.toml (git-ignored),
##         started from the tracked samconfig.toml's defaults
deploy: build
	test -f samconfig.local.toml || cp samconfig.toml samconfig.local.toml
	$(SAM) deploy --guided --config-file samconfig.local.toml

## lint: ruff and mypy over all code
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy layers/docdrop/docdrop cli/docdrop_cli local tests bench $(wildcard functions/*/*.py)

## bench: DocDrop against a naive baseline (bench/baseline): time, write units, memory, cost per 1M documents, on
##        Python 3.13 with INFO logs and metrics on; never asserted: compare ratios within one run (ROUNDS=5)
bench: $(STAMP) $(BENCH_STAMP) build
	$(BENCH_VENV)/bin/python -m bench.webhook_bench
	$(BENCH_VENV)/bin/python -m bench.upload_bench $(if $(ROUNDS),--rounds $(ROUNDS))
	$(BENCH_VENV)/bin/python -m bench.reconciler_bench

## chaos: the resilience suite: N documents (default 1000) with Cobalt's faults, duplicate events, late tags, lost
##        webhooks and uploader crashes; prints the promises' figures, exits 1 if one breaks (N=100 make chaos)
chaos: $(STAMP)
	$(BIN)/python -m bench.chaos_run $(if $(N),--documents $(N)) $(ARGS)

## model: the model-based test's long walk (tests/model): MODEL_EXAMPLES random walks (default 20000) of the actors'
##        steps, the promises checked after every step, in MODEL_SHARDS processes at once (default 2, one per core),
##        each with its own DynamoDB Local; prints what each shard's walks went through (make test runs 200)
MODEL_EXAMPLES ?= 20000
MODEL_SHARDS ?= 2
model: $(STAMP)
	seq $(MODEL_SHARDS) | xargs -P $(MODEL_SHARDS) -I{} env MODEL_EXAMPLES=$$(( $(MODEL_EXAMPLES) / $(MODEL_SHARDS) )) \
		MODEL_DERANDOMIZE=0 $(BIN)/pytest tests/model -q -s -p no:cacheprovider --timeout=0 $(ARGS)

## model-reverts: takes the fixes of #25's defects 1, 2 and 6 out again, one at a time, in a throwaway worktree, and
##        prints whether (and how soon) the model's walks find each (BUDGET seconds each, default 900)
model-reverts: $(STAMP)
	$(BIN)/python -m bench.model_reverts $(if $(BUDGET),--budget $(BUDGET)) $(ARGS)

## open-loops: 1,000 documents through the local stack, 3 % of webhooks never sent: how many stay open (claim: 0)
open-loops: $(STAMP)
	$(BIN)/python -m bench.open_loops_run $(ARGS)

## outage: 500 documents with a Cobalt outage in the middle, on a compressed clock: calls while down, DLQ, twice, drain
outage: $(STAMP)
	$(BIN)/python -m bench.outage_run $(ARGS)

## flood: a forged flood at twice the webhook route's throttle while Cobalt delivers, without the path token and at the
##        route itself: how many real deliveries are refused (claim without the token: 0)
flood: $(STAMP)
	$(BIN)/python -m bench.flood_run $(ARGS)

## hang: Cobalt accepts connections and never answers for 10 minutes while 300 documents are dropped (time-scale 10):
##       how many become a person's review (goal: at most 10)
hang: $(STAMP)
	$(BIN)/python -m bench.hang_run $(ARGS)

## sandbox: the Cobalt sandbox in the foreground on 127.0.0.1:$(PORT) (PORT=0 picks a free port)
sandbox: $(STAMP)
	$(BIN)/python -m local.cobalt_sandbox --port $(PORT) $(ARGS)

## clean: everything the targets created (virtualenvs, builds, the local stack's state, caches)
clean:
	rm -rf $(VENV) $(IAC_VENV) $(BENCH_VENV) .aws-sam .docdrop .pytest_cache .mypy_cache .ruff_cache .hypothesis cli/build
	find . -name '*.egg-info' -prune -exec rm -rf {} + -o -name __pycache__ -prune -exec rm -rf {} +

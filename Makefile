# kubegate — thin wrappers; the real work lives in deploy/local/*.sh and cargo.
SHELL := /bin/bash
PROFILE ?= release
CARGO ?= cargo
export CARGO_TARGET_DIR ?= $(CURDIR)/target

FUZZ_SECONDS ?= 60

.PHONY: help deps build up down reset status test fuzz bench fmt lint

help:
	@echo "make up      build and start the whole stack on https://127.0.0.1:9443"
	@echo "make down    stop what make up started"
	@echo "make reset   stop it and forget it: drop its databases, remove .kubegate"
	@echo "make status  show what is running"
	@echo "make test    run every test (needs PostgreSQL and NATS; make deps sets them up), then make fuzz"
	@echo "make fuzz    run each fuzz target for FUZZ_SECONDS (default 60) on its seed corpus"
	@echo "make bench   run the benchmarks and write bench/report.md"
	@echo "make fmt     format the code;  make lint  clippy with warnings as errors"

deps:
	@bash deploy/local/deps.sh

build: deps
	$(CARGO) build --locked --workspace --bins $(if $(filter release,$(PROFILE)),--release,)

up: build
	@PROFILE=$(PROFILE) bash deploy/local/up.sh

down:
	@bash deploy/local/down.sh

reset:
	@bash deploy/local/reset.sh

status:
	@bash deploy/local/status.sh

# Binaries first: end-to-end tests start the services as processes. The fuzz targets build
# meanwhile at the lowest priority (the end-to-end tests mostly wait), then each is run for
# FUZZ_SECONDS; a crash fails the run.
test: deps
	$(CARGO) build --locked --workspace --bins
	@mkdir -p "$(CARGO_TARGET_DIR)"; \
	FUZZ_BUILD_ONLY=1 nice -n 19 bash tests/fuzz/run.sh >"$(CARGO_TARGET_DIR)/fuzz-build.log" 2>&1 & fuzz_build=$$!; \
	status=0; \
	if $(CARGO) nextest --version >/dev/null 2>&1; then \
		$(CARGO) nextest run --locked --workspace --no-fail-fast --test-threads $${KUBEGATE_TEST_THREADS:-4} || status=$$?; \
	else \
		$(CARGO) test --locked --workspace --no-fail-fast -- --test-threads $${KUBEGATE_TEST_THREADS:-4} || status=$$?; \
	fi; \
	if ! wait $$fuzz_build; then echo "fuzz targets do not build:"; tail -n 40 "$(CARGO_TARGET_DIR)/fuzz-build.log"; exit 1; fi; \
	[ $$status -eq 0 ] || exit $$status; \
	FUZZ_SECONDS=$(FUZZ_SECONDS) bash tests/fuzz/run.sh

# libFuzzer via cargo fuzz (installed by make deps); fails when a target finds a crash.
fuzz: deps
	@FUZZ_SECONDS=$(FUZZ_SECONDS) bash tests/fuzz/run.sh

# BENCH_ARGS go to kubegate-bench, e.g. --only downloads --out /tmp/dl --env proxy:KUBEGATE_PROXY_SERVE_SPIN=0s
bench: deps
	@bash deploy/local/bench.sh $(BENCH_ARGS)

fmt:
	$(CARGO) fmt --all

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --locked --workspace --all-targets -- -D warnings

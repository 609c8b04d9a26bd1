# bc-connector developer commands. Everything the project needs is installed from its own files.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat requirements-dev.lock | cksum | cut -d' ' -f1)
AZURITE := node_modules/.bin/azurite
PYTEST_ARGS ?=

.PHONY: install lock browser run reset test demo bench lint settings peek replay-poison tail send trigger status clean

install: $(STAMP) $(AZURITE)

## Python packages from the lock: exact versions, each file checked against its SHA-256 (--require-hashes).
$(STAMP): requirements-dev.lock
	@echo "==> Installing Python packages into $(VENV) (the first time takes a minute or two)"
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q --require-hashes -r requirements-dev.lock
	@rm -f $(VENV)/.installed-* && touch $@

## Regenerate requirements-dev.lock (versions + hashes from PyPI) after editing requirements*.txt; pip-tools
## runs in a throwaway venv, with no local index or wheel folder, so the hashes are PyPI's own.
lock:
	@rm -rf .venv-lock && $(PYTHON) -m venv .venv-lock
	env -u PIP_FIND_LINKS PIP_CONFIG_FILE=/dev/null .venv-lock/bin/python -m pip install -q "pip==24.2" "pip-tools==7.4.1"
	env -u PIP_FIND_LINKS PIP_CONFIG_FILE=/dev/null .venv-lock/bin/pip-compile --quiet --generate-hashes \
	  --allow-unsafe --strip-extras --no-emit-index-url --no-emit-find-links --index-url https://pypi.org/simple \
	  --upgrade --output-file requirements-dev.lock requirements-dev.txt
	@rm -rf .venv-lock

$(AZURITE): package.json
	@echo "==> Installing Azurite from npm into node_modules (the first time takes about 15 s)"
	npm install --no-audit --no-fund --loglevel=error
	@touch $@

## Debian's Chromium and its driver, for the status page's browser test (installed only when missing).
browser:
	@test -x /usr/bin/chromium -a -x /usr/bin/chromedriver || { \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver; }

## Serve the connector on http://127.0.0.1:7071 against Azurite and the bundled BC + Entra emulator,
## keeping their state in .devdata/. Options: PORT (7071), EMULATOR_PORT (8443), AZURITE_PORT (10000,
## and the next two), DEBOUNCE (webhook debounce in seconds, 3; BC's is 30), RESET=1 (start fresh),
## INSTANCES=N (N host processes behind one port). Settings: local.settings.json, or NAME=value make run.
run: install
	@$(BIN)/python -m devtools.run $(if $(PORT),--port $(PORT)) $(if $(EMULATOR_PORT),--emulator-port $(EMULATOR_PORT)) \
	  $(if $(AZURITE_PORT),--azurite-port $(AZURITE_PORT)) $(if $(DEBOUNCE),--webhook-debounce $(DEBOUNCE)) \
	  $(if $(RESET),--reset) $(if $(INSTANCES),--instances $(INSTANCES))

## Wipe what `make run` keeps (Azurite's data and the emulator's state, together).
reset:
	@$(if $(wildcard $(BIN)/python),$(BIN)/python,$(PYTHON)) -m devtools.run --reset-only

## Start Azurite and the emulator on loopback, run the whole suite, stop what was started.
test: install browser
	@$(BIN)/python -m pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: failing" >&2; exit 1; fi; exit $$rc

## Scripted tour on the embedded defaults (no Azure or BC account needed).
demo: install
	$(BIN)/python -m devtools.demo

## Benchmarks: figures and ratios against naive baselines and bounds measured in the same run, one
## summary line, exit 1 on a missed target (default sizes finish in minutes; ARGS=--large adds 100k items).
bench: install browser
	$(BIN)/python -m bench $(ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/mypy

## Regenerate the README settings table, local.settings.example.json and infra/connector.json from
## connector/settings.py (tests fail while any of them is stale).
settings: install
	$(BIN)/python -m devtools.settings_files --write

## Print the oldest messages of a queue, left there (QUEUE=sales-order-results by default; ARGS="--wait 30",
## "--take" consumes them).
peek: install
	@$(BIN)/python -m connector peek $(or $(QUEUE),sales-order-results) $(ARGS)

## Move messages from <queue>-poison back to <queue> after a fix (QUEUE=sales-orders by default).
replay-poison: install
	@$(BIN)/python -m connector replay-poison $(or $(QUEUE),sales-orders)

## Every output queue live, one line per event (peeks; ARGS="--type item.* --json").
tail: install
	@$(BIN)/python -m connector tail $(ARGS)

## Check an order against its schema, queue it and print its result (FILE=docs/examples/sales-order.json).
send: install
	@$(BIN)/python -m connector send $(or $(FILE),docs/examples/sales-order.json) $(ARGS)

## Make a change in the local BC emulator (EVENT=item.created | item.updated | shipment.posted | ...).
trigger: install
	@$(BIN)/python -m connector trigger $(or $(EVENT),item.created) $(ARGS)

## The banner of the running `make run` again, and the connections now.
status: install
	@$(BIN)/python -m connector status $(ARGS)

clean:
	rm -rf $(VENV) node_modules .azurite .devdata .pytest_cache

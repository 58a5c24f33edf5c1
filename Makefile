# Switchboard: `make run` serves it, `make test` tests it. Both build .venv themselves.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run test typecheck cluster bench profile lint format lock audit clean redis-server nginx chromium

# Every download is checked against the hashes in requirements*.txt (--require-hashes). The
# Python client (clients/python/) is then installed editable, in a pip call of its own, since
# --require-hashes refuses a local path; its dependencies came, hashed, with requirements.txt.
PIP_INSTALL := $(BIN)/python -m pip install --quiet --disable-pip-version-check

# The venv's own pip (23.2 beside Python 3.11) refuses a hash-checked install once a locked
# package is also asked for with extras (`name[extra]`) and the index holds a newer release
# of it; the locked pip does not: it is installed first.
$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	awk '/^pip==/ {p = 1; print; next} p && /^ +--hash/ {print; next} {p = 0}' \
		requirements-dev.txt > $(VENV)/pip-lock.txt
	$(PIP_INSTALL) --require-hashes --no-deps -r $(VENV)/pip-lock.txt

$(VENV)/.runtime: requirements.txt clients/python/pyproject.toml | $(BIN)/python
	$(PIP_INSTALL) --require-hashes -r requirements.txt
	$(PIP_INSTALL) --no-deps --editable ./clients/python
	touch $@

$(VENV)/.dev: requirements.txt requirements-dev.txt $(VENV)/.runtime
	$(PIP_INSTALL) --require-hashes -r requirements.txt -r requirements-dev.txt
	touch $@

## run: install, migrate, collect static files and serve on http://$(HOST):$(PORT)/ (DEBUG on)
run: export DJANGO_DEBUG ?= 1
run: $(VENV)/.runtime
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py collectstatic --noinput --verbosity 0
	@echo ""
	@echo "Switchboard is starting on http://$(HOST):$(PORT)/ (DEBUG on, one worker)"
	@echo "  Console:    http://$(HOST):$(PORT)/  (register, log in, sessions, rooms, live frame log)"
	@echo "  API docs:   http://$(HOST):$(PORT)/api/docs/  (Swagger UI: every REST endpoint; schema: http://$(HOST):$(PORT)/api/schema/)"
	@echo "  Admin:      http://$(HOST):$(PORT)/admin/"
	@echo "  Health:     http://$(HOST):$(PORT)/healthz  and  http://$(HOST):$(PORT)/readyz"
	@echo "  WebSockets: ws://$(HOST):$(PORT)/ws/echo/  and  ws://$(HOST):$(PORT)/ws/session/?ticket=<ticket>"
	@echo "              (a single-use ticket from POST /api/realtime/ticket/ with Authorization: Bearer <access>;"
	@echo "              or send that header on the handshake)"
	@echo "  Access tokens last 5 minutes (JWT_ACCESS_TTL=300). Close 4001 means the token expired:"
	@echo "  get a new one from POST /api/auth/token/refresh/ and reconnect."
	@echo "  In another shell, in this folder:"
	@echo "    create an admin user:"
	@echo "      DJANGO_DEBUG=1 $(BIN)/python manage.py createsuperuser"
	@echo "    or register and log in over REST (the second prints {\"access\": ..., \"refresh\": ...}):"
	@echo "      curl --fail-with-body -sS -H 'Content-Type: application/json' -d '{\"username\":\"alice\",\"email\":\"alice@example.com\",\"password\":\"correct horse battery staple\"}' http://$(HOST):$(PORT)/api/auth/register/"
	@echo "      curl --fail-with-body -sS -H 'Content-Type: application/json' -d '{\"username\":\"alice\",\"password\":\"correct horse battery staple\"}' http://$(HOST):$(PORT)/api/auth/token/"
	@echo ""
	exec $(BIN)/daphne -b $(HOST) -p $(PORT) config.asgi:application

## cluster: Redis + 2 daphne workers + nginx in front, on http://127.0.0.1:8080/; Ctrl-C stops all
cluster: $(VENV)/.runtime redis-server nginx
	$(BIN)/python deploy/cluster.py

## bench: Switchboard (daphne, uvicorn, granian) beside a bare websockets peer on uvloop: pinned cores,
## a fresh server per run, three alternating repetitions (about 12 minutes, estimate printed first);
## writes docs/BENCHMARKS.md, docs/benchmarks.png and docs/benchmarks.json
bench: $(VENV)/.dev redis-server
	$(BIN)/python -m bench.run

## profile: a fresh worker of PROFILE_SERVER (uvicorn, or daphne) per load, pinned as make bench pins
## it, with py-spy sampling it; writes docs/perf/<server>-<scenario>.svg and -top.txt, the hottest
## functions (py-spy needs ptrace: run as root or the same user); and docs/perf/idle-memory.txt, an idle
## session's heap by the line that allocated it
PROFILE_SERVER ?= uvicorn
profile: $(VENV)/.dev redis-server
	$(BIN)/python -m bench.profile --server $(PROFILE_SERVER)
	$(BIN)/python -m bench.idle_memory > docs/perf/idle-memory.txt

## test: install test dependencies, make sure redis-server, nginx and chromium exist, run the whole suite
## (on SQLite; with TEST_POSTGRES_URL=postgres://user@host:5432/db, on PostgreSQL)
# The locked wheels (and the pinned build backend) on disk, so that the packaging tests install
# the two distributions into fresh venvs with no index: no test needs the network.
$(VENV)/wheelhouse: requirements.txt requirements-dev.txt | $(BIN)/python
	$(BIN)/python -m pip download --quiet --disable-pip-version-check --require-hashes --no-deps -r requirements.txt -d $@.part
	$(BIN)/python -m pip download --quiet --disable-pip-version-check --no-deps -d $@.part "$$(grep -o '^setuptools==[^ ]*' requirements-dev.txt)"
	rm -rf $@ && mv $@.part $@

test: typecheck $(VENV)/.dev $(VENV)/wheelhouse redis-server nginx chromium
	$(if $(TEST_POSTGRES_URL),DATABASE_URL=$(TEST_POSTGRES_URL) )$(BIN)/python -m pytest $(PYTEST_ARGS)

## typecheck: mypy over the service's packages and the client ([tool.mypy] in pyproject.toml);
## `make test` runs it first. DEBUG on only so that the settings import without a secret.
typecheck: $(VENV)/.dev
	DJANGO_DEBUG=1 DJANGO_ENV_FILE= $(BIN)/mypy

redis-server:
	@command -v redis-server >/dev/null 2>&1 && exit 0; \
	if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
		echo "redis-server not found: installing Debian's redis-server"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null; \
	fi; \
	command -v redis-server >/dev/null 2>&1 || { \
		echo "ERROR: the tests need a redis-server binary on PATH (Debian: apt-get install redis-server)."; \
		exit 1; }

nginx:
	@command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] && exit 0; \
	if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
		echo "nginx not found: installing Debian's nginx"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx >/dev/null; \
	fi; \
	command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || { \
		echo "ERROR: make cluster and the tests need nginx (Debian: apt-get install nginx)."; \
		exit 1; }

# The browser tests (tests/system/test_console_browser.py) drive Debian's Chromium; where it
# cannot be installed they skip with a loud reason, and fail when CI is set.
chromium:
	@[ -x /usr/bin/chromium ] && exit 0; \
	if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
		echo "chromium not found: installing Debian's chromium (for the browser tests)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	fi; \
	[ -x /usr/bin/chromium ] || echo "WARNING: /usr/bin/chromium is missing and cannot be installed here (apt-get as root): the browser tests will be SKIPPED (and FAIL under CI)."

lint: $(VENV)/.dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(VENV)/.dev
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

## lock: re-pin requirements.txt and requirements-dev.txt from the .in files, with every
## file's sha256 (pip-tools; keeps today's pins unless a .in range excludes them)
PIP_COMPILE := $(BIN)/pip-compile --quiet --generate-hashes --allow-unsafe --strip-extras \
	--no-header --no-emit-index-url --no-emit-find-links
lock: $(VENV)/.dev
	$(PIP_COMPILE) -o requirements.txt requirements.in
	$(PIP_COMPILE) -o requirements-dev.txt requirements-dev.in

## audit: check every pinned package against known vulnerabilities (needs PyPI's JSON API)
audit: $(VENV)/.dev
	$(BIN)/pip-audit --strict --requirement requirements.txt --requirement requirements-dev.txt

clean:
	rm -rf $(VENV) staticfiles test-artifacts .pytest_cache .cluster

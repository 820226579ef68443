# webapp: `make run` serves the app, `make test` runs the whole suite. `make help` lists all.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
BIND ?= 127.0.0.1:8000
# What .venv holds, one stamp each: the serving packages (make run), then the test tools too
# (make test and the rest), at the exact versions of requirements.txt / requirements-test.txt.
SERVE_STAMP := $(VENV)/.serve-installed
STAMP := $(VENV)/.installed
# How `make lock` writes both files from setup.cfg's ranges (for any platform, Python 3.11+).
LOCK := $(BIN)/uv pip compile setup.cfg --quiet --generate-hashes --universal \
	--python-version 3.11 --custom-compile-command "make lock" $(if $(UPGRADE),--upgrade)
# Debian packages the test suite drives (browser tests use Debian's chromium, never a
# browser downloaded by Playwright), each with a file that shows it is installed.
TEST_DEBS := chromium:/usr/bin/chromium redis-server:/usr/bin/redis-server \
	postgresql:/usr/lib/postgresql/*/bin/initdb nginx:/usr/sbin/nginx openssl:/usr/bin/openssl \
	systemd:/usr/bin/systemd-analyze wrk:/usr/bin/wrk \
	valgrind:/usr/bin/valgrind

.DEFAULT_GOAL := help
.PHONY: help run test lint lock bench stress screenshots system-deps clean

help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-z-]+:.*## / {printf "  make %-12s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# The locked versions, hash-checked; then webapp itself, whose ranges they must meet.
$(SERVE_STAMP): requirements.txt setup.cfg pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet --require-hashes -r requirements.txt
	$(BIN)/pip install --quiet --no-deps -e .
	@$(BIN)/pip check >/dev/null || { $(BIN)/pip check; \
		echo "requirements.txt does not meet setup.cfg: run make lock"; exit 1; }
	@touch $@

$(STAMP): $(SERVE_STAMP) requirements-test.txt
	$(BIN)/pip install --quiet --require-hashes -r requirements-test.txt
	@touch $@

# Plain HTTP on loopback (no secure cookies), mailed links to where it listens, and no /session
# polls in the access log, unless the environment says otherwise; gunicorn.conf.py prints the
# banner once a worker listens.
run: $(SERVE_STAMP) ## Serve on embedded defaults at http://127.0.0.1:8000 (BIND=host:port to move)
	@export WEBAPP_SECURE_COOKIES=$${WEBAPP_SECURE_COOKIES:-false} \
		WEBAPP_BASE_URL=$${WEBAPP_BASE_URL:-http://$(subst 0.0.0.0:,127.0.0.1:,$(BIND))} \
		WEBAPP_LOG_POLLS=$${WEBAPP_LOG_POLLS:-false} RUN_BANNER=1 BIND=$(BIND) && \
	$(BIN)/flask --app webapp db upgrade && \
	exec $(BIN)/gunicorn -c gunicorn.conf.py

lock: | $(BIN)/python ## Rewrite requirements*.txt from setup.cfg, pins kept (UPGRADE=1: newest allowed)
	$(BIN)/pip install --quiet --require-hashes -r requirements-test.txt
	$(LOCK) -o requirements.txt
	$(LOCK) --extra test -c requirements.txt -o requirements-test.txt

system-deps: ## Install the Debian packages the tests need (as root), or say which
	@missing=""; for dep in $(TEST_DEBS); do \
		ls $${dep#*:} >/dev/null 2>&1 || missing="$$missing $${dep%%:*}"; done; \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" = 0 ]; then \
			echo "Installing Debian packages:$$missing"; \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
				apt-get install -y -qq $$missing >/dev/null || exit 1; \
			service nginx stop >/dev/null 2>&1 || true; \
		else \
			echo "make test needs these Debian packages:$$missing"; \
			echo "install them with: sudo apt-get install$$missing"; exit 1; \
		fi; \
	fi

lint: $(STAMP) ## ruff and mypy
	$(BIN)/ruff check webapp tests bench wsgi.py gunicorn.conf.py
	$(BIN)/ruff format --check webapp tests bench wsgi.py gunicorn.conf.py
	$(BIN)/mypy

test: $(STAMP) system-deps lint ## The whole suite: lint; files+SQLite and Redis+PostgreSQL; gunicorn, two hosts, browser
	$(BIN)/pytest --cov --cov-report=term

bench: $(STAMP) system-deps ## /session polls vs a bare Flask app and Flask-Login + Flask-Session, under gunicorn (MARKDOWN=FILE to save)
	$(BIN)/python bench/run.py $(if $(MARKDOWN),--markdown $(MARKDOWN)) $(BENCH_ARGS)

stress: $(STAMP) system-deps ## 500 users per store, then anonymous visits; every answer checked (MARKDOWN=FILE to save)
	$(BIN)/python bench/stress/run.py $(if $(MARKDOWN),--markdown $(MARKDOWN)) $(STRESS_ARGS)

screenshots: $(STAMP) system-deps ## Regenerate docs/screenshots/*.png from the browser tests
	WEBAPP_SCREENSHOTS=1 $(BIN)/pytest tests/live -m browser -q

.PHONY: fuzz
fuzz: $(STAMP) system-deps ## Property tests on random seeds, 1000 examples; failures kept in .hypothesis/
	HYPOTHESIS_PROFILE=fuzz $(BIN)/pytest tests/test_hostile_input.py $(FUZZ_ARGS)

clean: ## Remove the virtualenv and caches (the instance folder is kept)
	rm -rf $(VENV) .coverage .pytest_cache .mypy_cache .ruff_cache *.egg-info

# The two commands of the README: `make run` and `make test`.
UV := python3 -m uv
export UV_PYTHON_DOWNLOADS := never

.PHONY: install run test lint unit events infra-up infra-down

install:
	@scripts/bootstrap

## Start the whole platform in one process on the embedded backend: http://127.0.0.1:8000
run: install
	$(UV) run python -m services

## Lint, then every test on both backends (Kafka and FerretDB are started by scripts/infra when absent).
test: install lint
	@scripts/bootstrap --tests
	$(UV) run pytest

lint:
	$(UV) run ruff check .
	$(UV) run ruff format --check .
	$(UV) run mypy
	$(UV) run lint-imports
	$(UV) run python -m shared.events check

## Only the tests that need no server.
unit: install
	$(UV) run pytest tests/unit -q

## Regenerate docs/events from the catalog.
events: install
	$(UV) run python -m shared.events export

infra-up:
	scripts/infra up

infra-down:
	scripts/infra down

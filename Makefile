PYTHON ?= python3
PYTEST_ARGS ?=

.PHONY: install compile clean-compiled kafka test test-postgres demo

## Install Herald and its development tools into the current Python environment.
install:
	$(PYTHON) -m pip install -e ".[dev]"

## Compile the domain logic with mypyc, in place: the engine runs about a third faster.
## Run it again after editing a compiled module; the tests stop when a build is stale.
compile:
	HERALD_COMPILE=1 $(PYTHON) setup.py --quiet build_ext --inplace
	@# mypyc leaves a module whose code did not change as it was, so the build is dated
	@# now: the stale check of the tests and the worker compares source and build times.
	find domain schemas -name '*.so' -exec touch {} +

## Remove the compiled modules, so that Python runs the source again.
clean-compiled:
	find domain schemas -name '*.so' -delete
	rm -f ./*__mypyc.*.so
	rm -rf build

## Install and start the development broker on 127.0.0.1, then create Herald's topics.
kafka:
	herald kafka install
	herald kafka start
	herald kafka topics

## Run the tests. Tests marked `kafka` start the broker themselves when none is running.
test:
	$(PYTHON) -m pytest -q $(PYTEST_ARGS)

## Run the control-plane tests again on a throwaway PostgreSQL server on 127.0.0.1
## (installed from Debian's packages when missing).
test-postgres:
	bash .ci/postgres.sh start > .herald/postgres-url
	HERALD_TEST_DATABASE_URL="$$(cat .herald/postgres-url)" $(PYTHON) -m pytest -q -m "not kafka" \
		tests/api/test_labels.py tests/api/test_campaigns.py tests/api/test_campaigns_cli.py \
		tests/api/test_campaigns_edit_rules.py tests/api/test_campaigns_roles.py \
		tests/api/test_invalid_json_values.py tests/api/test_account_delivery.py tests/control; \
		status=$$?; bash .ci/postgres.sh stop; exit $$status

## From nothing: install, start Kafka, a worker and the API, replay the reference dataset,
## and print the landed count of each event name next to the CSV's.
demo: install
	herald demo

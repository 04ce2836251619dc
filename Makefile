PYTHON ?= python3
PYTEST_ARGS ?=

.PHONY: install kafka test demo

## Install Herald and its development tools into the current Python environment.
install:
	$(PYTHON) -m pip install -e ".[dev]"

## Install and start the development broker on 127.0.0.1, then create Herald's topics.
kafka:
	herald kafka install
	herald kafka start
	herald kafka topics

## Run the tests. Tests marked `kafka` start the broker themselves when none is running.
test:
	$(PYTHON) -m pytest -q $(PYTEST_ARGS)

## From nothing: install, start Kafka, a worker and the API, replay the reference dataset,
## and print the landed count of each event name next to the CSV's.
demo: install
	herald demo

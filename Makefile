# chatlog: the two commands of the README.
#   make run    build and run chatlog on the journal in $(JOURNAL)
#   make test   build and run the whole test suite (Swift tests, the CLI tests in tools/, 20 s of fuzzing)
# Both install missing system packages first (tools/ensure-deps.sh).

JOURNAL ?= data/journal
SWIFT ?= swift

.PHONY: run test build release deps bench clean

deps:
	@tools/ensure-deps.sh

build: deps
	$(SWIFT) build

release: deps
	$(SWIFT) build -c release

# Until the chat server lands, chatlog's main job on a journal directory: append each line
# typed on standard input as a durable record, then show the journal's totals.
run: release
	@mkdir -p $(dir $(JOURNAL))
	@echo "chatlog: appending each line you type to $(JOURNAL) (Ctrl-D to stop)" >&2
	.build/release/chatlog journal append --journal $(JOURNAL)
	.build/release/chatlog journal stats --journal $(JOURNAL)

test:
	@tools/ensure-deps.sh --python
	$(SWIFT) build --build-tests
	$(SWIFT) test --skip-build
	CHATLOG=.build/debug/chatlog .venv/bin/python -m pytest -q tools/tests
	tools/fuzz.sh 20

bench: release
	.build/release/chatlog bench journal

clean:
	rm -rf .build .venv

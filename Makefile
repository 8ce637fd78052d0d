# chatlog: the two commands of the README.
#   make run    build and run the chat server (--dev) on the journal in $(JOURNAL), 127.0.0.1:$(PORT)
#   make test   build and run the whole test suite (Swift tests, the CLI tests in tools/, 20 s of fuzzing)
# Both install missing system packages first (tools/ensure-deps.sh).

JOURNAL ?= data/journal
PORT ?= 3000
SWIFT ?= swift

.PHONY: run test build release deps bench clean

deps:
	@tools/ensure-deps.sh

build: deps
	$(SWIFT) build

release: deps
	$(SWIFT) build -c release

# The server binary, rebuilt only when a source changed: `make run` starts in about a second
# when nothing did (a no-op `swift build` alone takes 10 to 40 s). touch: a build that changed
# nothing leaves the binary older than the sources.
SOURCES := Package.swift $(shell find Sources -type f 2>/dev/null)
.build/release/chatlog: $(SOURCES)
	$(SWIFT) build -c release --product chatlog
	@touch $@

# The chat server in development mode (usernames as clients state them, any CORS origin), in
# the foreground; Ctrl-C stops it cleanly. It prints "listening on http://127.0.0.1:PORT".
run: deps .build/release/chatlog
	@mkdir -p $(dir $(JOURNAL))
	@echo "chatlog: serving $(JOURNAL) at http://127.0.0.1:$(PORT) (development mode; Ctrl-C to stop)" >&2
	exec .build/release/chatlog serve --journal $(JOURNAL) --host 127.0.0.1 --port $(PORT) --dev

test:
	@tools/ensure-deps.sh --python
	$(SWIFT) build --build-tests
	CHATLOG_REQUIRE_ETCD=1 $(SWIFT) test --skip-build
	CHATLOG=.build/debug/chatlog .venv/bin/python -m pytest -q tools/tests
	tools/fuzz.sh 20

bench: release
	.build/release/chatlog bench journal

clean:
	rm -rf .build .venv

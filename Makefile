# cotracker3_ros developer entry points. Everything runs inside the venv made by scripts/install.sh.
#   make install   create/update .venv, build cotracker3_msgs + cotracker3_ros into build/ws (ROS 2 Kilted;
#                  ROS_DISTRO=jazzy make install: .venv-jazzy + build/ws-jazzy)
#   make test      install, then two legs, both always run, either fails the target:
#                    main (Kilted, or the ROS_DISTRO of make install): ruff + the whole pytest suite (scripts/test.sh);
#                    Jazzy: install Jazzy, then its message/node/DDS tests (scripts/test_jazzy.sh);
#                  JAZZY=0 make test skips the Jazzy leg (CI runs it)
#   make test-jazzy  the Jazzy leg alone
#   make demo      install, then run the node demo without the ros2 CLI
#   make bench     install, then the engine, node and real-time (lite at 15 Hz) benchmarks with --check (about 20 min on 2 CPU cores)
#   make lint      ruff check
#   make clean     remove the colcon workspaces (build/ws, build/ws-jazzy); the venvs stay
SHELL := /bin/bash

.PHONY: install test test-jazzy demo bench lint clean

install:
	bash scripts/install.sh

# The skip notice comes first and a failure line only on failure, so that a passing run ends on
# pytest's summary line.
test: install
	@if [[ "$(JAZZY)" == 0 ]]; then echo "[test] JAZZY=0: the ROS 2 Jazzy leg is skipped"; fi
	@main=0; bash scripts/test.sh || main=$$?; \
	jazzy=0; if [[ "$(JAZZY)" != 0 ]]; then bash scripts/test_jazzy.sh || jazzy=$$?; fi; \
	if [[ $$main != 0 || $$jazzy != 0 ]]; then \
		echo "[test] FAILED: main leg exit $$main, Jazzy leg exit $$jazzy" >&2; exit 1; fi

test-jazzy:
	bash scripts/test_jazzy.sh

demo: install
	bash scripts/demo.sh

bench: install
	bash -c 'source scripts/env.sh && python -m benchmarks.engine --markdown --check && python -m benchmarks.node --markdown --check && python -m benchmarks.realtime --markdown --check'

lint:
	bash -c 'source scripts/env.sh && ruff check .'

clean:
	rm -rf build/ws build/ws-jazzy

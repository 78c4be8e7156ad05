# cotracker3_ros developer entry points. Everything runs inside the venv made by scripts/install.sh.
#   make install   create/update .venv, build cotracker3_msgs + cotracker3_ros into build/ws
#   make test      install, then ruff + pytest (scripts/test.sh)
#   make demo      install, then run the node demo without the ros2 CLI
#   make bench     install, then the engine, node and real-time (lite at 15 Hz) benchmarks with --check (about 20 min on 2 CPU cores)
#   make lint      ruff check
#   make clean     remove the colcon workspace (build/ws); the venv stays
SHELL := /bin/bash

.PHONY: install test demo bench lint clean

install:
	bash scripts/install.sh

test: install
	bash scripts/test.sh

demo: install
	bash scripts/demo.sh

bench: install
	bash -c 'source scripts/env.sh && python -m benchmarks.engine --markdown --check && python -m benchmarks.node --markdown --check && python -m benchmarks.realtime --markdown --check'

lint:
	bash -c 'source scripts/env.sh && ruff check .'

clean:
	rm -rf build/ws

# The two commands of the README:
#   make demo   set up, then run the demo on the embedded example network
#   make test   install everything, then lint, type-check and run the whole suite
# Both work as root on a fresh Debian machine from a clean clone.

PYTHON ?= python3
PIP := $(PYTHON) -m pip install --quiet --disable-pip-version-check --root-user-action=ignore

.PHONY: demo test deps system-deps python-deps lint typecheck unit bench

# The demo runs cnilib's in-process plugins: no apt package is needed
# (`python3 examples/demo.py --go` uses Debian's Go plugins instead).
demo: python-deps
	$(PYTHON) examples/demo.py

test: deps lint typecheck
	$(PYTHON) -m pytest --cov --cov-report=term:skip-covered -p no:cacheprovider

deps: system-deps python-deps

# Debian's Go reference plugins are the peer the integration tests compare against.
system-deps:
	@if [ ! -x /usr/lib/cni/bridge ] || ! command -v iptables >/dev/null || ! command -v ip >/dev/null \
			|| ! command -v nft >/dev/null; then \
		echo "installing containernetworking-plugins, iptables, nftables, iproute2"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
			containernetworking-plugins iptables nftables iproute2 >/dev/null; \
	fi

python-deps:
	$(PIP) -e '.[test,lint]'

lint:
	$(PYTHON) -m ruff check .
	$(PYTHON) -m ruff format --check .

typecheck:
	$(PYTHON) -m mypy

bench: deps
	$(PYTHON) benchmarks/run_all.py

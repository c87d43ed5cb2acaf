# The two commands of the README:
#   make demo   create the virtual environment .venv, install cnilib alone into it,
#               then run the demo on the embedded example network
#   make test   install the apt packages the tests drive, install cnilib with its test, lint,
#               docs and bench extras into .venv, then lint, type-check, build the
#               documentation site and run the whole suite
# Both work as root on a fresh Debian 12 from a clean clone with only make installed: a missing
# python3 or python3-venv is installed with apt-get. Debian's Python is externally managed
# (PEP 668), so nothing is installed into it: every step runs the virtual environment's python.
#
# PYTHON is the interpreter the virtual environment is made from (`make demo PYTHON=/usr/bin/python3`);
# a .venv made from another interpreter is made again. VENV moves the virtual environment.

PYTHON ?= python3
VENV ?= .venv
VPYTHON := $(VENV)/bin/python
PIP := $(VPYTHON) -m pip install --quiet --disable-pip-version-check
APT_INSTALL := apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq

.PHONY: demo test coverage venv demo-deps test-deps bench-deps demo-system-deps system-deps \
	lint typecheck docs bench

# The demo runs cnilib's in-process plugins: only `ip` (iproute2) and `iptables` are needed
# (`.venv/bin/python examples/demo.py --go` uses Debian's Go plugins instead, after `make test`).
demo: demo-system-deps demo-deps
	$(VPYTHON) examples/demo.py

# Two worker processes, each taking whole test files (module fixtures such as a DHCP
# server or etcd are made once per file): the suite spends most of its time waiting on
# timers, so two workers on two cores take about 6 minutes where one takes 11.
test: test-deps lint typecheck docs
	$(VPYTHON) -m pytest -n 2 --dist loadfile --durations=20 -p no:cacheprovider

# The same suite with branch coverage. Tracing doubles the time of the CPU-bound tests (the
# property tests: 8.5 s against 4.7 s), CPU that the 15-minute CI budget of `make test`
# cannot spare on a loaded machine.
coverage: test-deps
	$(VPYTHON) -m pytest --cov --cov-report=term:skip-covered -p no:cacheprovider

# The virtual environment: kept while it runs and was made from $(PYTHON)'s interpreter,
# made again otherwise. Debian ships venv's pip (ensurepip) apart, in python3-venv.
venv:
	@if [ ! -x "$$(command -v $(PYTHON))" ] && [ "$(PYTHON)" = python3 ]; then \
		echo "installing python3, python3-venv"; \
		$(APT_INSTALL) python3 python3-venv >/dev/null || exit 1; \
	fi; \
	want=$$($(PYTHON) -c 'import sys; print(sys.base_prefix, sys.version)') || exit 1; \
	have=$$($(VPYTHON) -c 'import sys; print(sys.base_prefix, sys.version)' 2>/dev/null); \
	if [ "$$have" != "$$want" ]; then \
		if [ -e $(VENV) ] && [ ! -f $(VENV)/pyvenv.cfg ]; then \
			echo "$(VENV) exists and is not a virtual environment: not replacing it" >&2; exit 1; \
		fi; \
		rm -rf $(VENV); \
		echo "creating $(VENV) with $(PYTHON)"; \
		if ! $(PYTHON) -m venv $(VENV) >/dev/null 2>&1; then \
			rm -rf $(VENV); \
			echo "$(PYTHON) -m venv failed: installing python3-venv"; \
			$(APT_INSTALL) python3-venv >/dev/null && $(PYTHON) -m venv $(VENV) || exit 1; \
		fi; \
	fi

# Each install is redone only when pyproject.toml (the dependencies) or this Makefile (the
# extras) changed since (stamp files in the venv). Editable: the venv runs the checkout's code.
define install
	@if [ ! -f $(VENV)/.installed-$(1) ] || [ pyproject.toml -nt $(VENV)/.installed-$(1) ] \
			|| [ Makefile -nt $(VENV)/.installed-$(1) ]; then \
		echo "installing $(2) into $(VENV)"; \
		$(PIP) -e '$(2)' && touch $(foreach s,$(1) $(3),$(VENV)/.installed-$(s)); \
	fi
endef

demo-deps: venv
	$(call install,demo,.)

# Everything the checks need, which includes what the demo and the benchmarks need:
# mypy checks the benchmarks' charts against matplotlib's types (the bench extra).
TEST_EXTRAS := test,lint,docs,bench,overlay
test-deps: system-deps venv
	$(call install,test,.[$(TEST_EXTRAS)],demo bench)

# The benchmarks' charts (bench) and the overlay benchmark's etcd client (overlay); in a
# variable, since a comma in $(call ...) would split the argument.
BENCH_EXTRAS := bench,overlay
bench-deps: system-deps venv
	$(call install,bench,.[$(BENCH_EXTRAS)],demo)

demo-system-deps:
	@missing=""; \
	command -v ip >/dev/null || missing="$$missing iproute2"; \
	command -v iptables >/dev/null || [ -x /usr/sbin/iptables ] || missing="$$missing iptables"; \
	if [ -n "$$missing" ]; then \
		echo "installing$$missing"; \
		$(APT_INSTALL) $$missing >/dev/null; \
	fi

# Debian's Go reference plugins are the peer the integration tests compare against; procps
# (pgrep, sysctl) is in a full Debian install but not in minimal images; dnsmasq-base (the
# binary only, no service) is the DHCP server of the dhcp plugin's tests.
system-deps:
	@if [ ! -x /usr/lib/cni/bridge ] || ! command -v iptables >/dev/null || ! command -v ip >/dev/null \
			|| ! command -v nft >/dev/null || ! command -v pgrep >/dev/null \
			|| [ ! -x /usr/sbin/dnsmasq ]; then \
		echo "installing containernetworking-plugins, iptables, nftables, iproute2, procps, dnsmasq-base"; \
		$(APT_INSTALL) containernetworking-plugins iptables nftables iproute2 procps dnsmasq-base \
			>/dev/null; \
	fi
	@# etcd-server is the cluster store of the overlay's tests: they start their own etcd
	@# (loopback, free ports, a tmp data dir) and never use a system one. Its postinst starts
	@# the system's etcd on 127.0.0.1:2379 through invoke-rc.d, so the install runs under a
	@# policy-rc.d that denies starting services (one already present is left as it is; ours is
	@# removed also when the install is interrupted: left behind, it would deny every service), and
	@# on a systemd machine the unit it enables is disabled again: installing it leaves no etcd
	@# running, now or after a reboot.
	@if [ ! -x /usr/bin/etcd ]; then \
		echo "installing etcd-server (its service is not started)"; \
		guard=; \
		if [ ! -e /usr/sbin/policy-rc.d ]; then \
			trap 'rm -f /usr/sbin/policy-rc.d' EXIT; trap 'exit 130' HUP INT TERM; \
			printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d \
				&& guard=1; \
		fi; \
		$(APT_INSTALL) etcd-server >/dev/null; rc=$$?; \
		[ -z "$$guard" ] || rm -f /usr/sbin/policy-rc.d; \
		if [ -d /run/systemd/system ]; then systemctl disable --now etcd >/dev/null 2>&1 || true; fi; \
		exit $$rc; \
	fi

lint: test-deps
	$(VPYTHON) -m ruff check .
	$(VPYTHON) -m ruff format --check .

typecheck: test-deps
	$(VPYTHON) -m mypy

# The documentation site, into site/; warnings are errors.
docs: test-deps
	@if [ -f mkdocs.yml ]; then \
		echo "$(VPYTHON) -m mkdocs build --strict"; \
		NO_MKDOCS_2_WARNING=1 $(VPYTHON) -m mkdocs build --strict; \
	else \
		echo "no mkdocs.yml: no documentation site to build"; \
	fi

bench: bench-deps
	$(VPYTHON) benchmarks/run_all.py

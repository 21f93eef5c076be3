# The two commands README promises: `make demo` and `make test`. Each sets up
# everything it needs (Debian packages, a virtualenv) on a fresh machine.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: demo test venv bench bench-ab bench-icmp bench-snmp bench-services bench-status bench-scaleout soak false-pages scenarios clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $@

venv: $(BIN)/.installed

demo: venv
	scripts/install-system-deps demo
	$(BIN)/lifeline demo

test: venv
	scripts/install-system-deps test
	$(BIN)/pytest -q

# Benchmarks and the soak (loopback only; as root). Not part of `make test`.
bench: bench-icmp bench-snmp bench-services bench-status

bench-icmp: venv
	scripts/install-system-deps test
	$(BIN)/python bench/bench_icmp.py

# Two builds side by side (CPU per echo at 10,000 targets): make bench-ab BASE=<rev> [CHANGED=<rev>]
bench-ab: venv
	$(BIN)/python bench/ab_icmp.py $(BASE) $(CHANGED) --results bench/results.md

bench-snmp: venv
	scripts/install-system-deps test
	$(BIN)/python bench/bench_snmp.py --devices 1000 --rounds 3

bench-services: venv
	scripts/install-system-deps test
	$(BIN)/python bench/bench_services.py

bench-status: venv
	$(BIN)/python bench/bench_status.py

# Issue 14, goal 5: 3 shards x 10,000 loopback targets behind one Prometheus with the shipped rules
# (as root; about 8 minutes; saturates a 2-core machine). Not part of `make bench`.
bench-scaleout: venv
	scripts/install-system-deps test
	$(BIN)/python bench/bench_scaleout.py

soak: venv
	$(BIN)/python bench/soak.py --minutes 20 --targets 3000 --churn 400

# Issue 11, scenario 5: lossy P0 circuits, blackouts and a reload for 20 minutes must page nobody
# (real agent, Prometheus, Alertmanager; netns hosts, as root). `make false-pages MINUTES=3` to try it.
MINUTES ?= 20
false-pages: venv
	scripts/install-system-deps test
	$(BIN)/python bench/false_pages.py --minutes $(MINUTES)

# Issue 11, scenarios 1-4: what pages and what does not, end to end at production timings
# (agents in namespaces, Prometheus, Alertmanager, a webhook; as root; ~15 minutes). Not in `make test`.
scenarios: venv
	scripts/install-system-deps test
	$(BIN)/pytest -m slow -s tests/scenarios

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis

# Common entry points. Every target delegates to a script or module; see README.md.
PYTHON ?= .venv/bin/python
ARGS ?=

.PHONY: help test train bench bench-replay bench-update bench-env bench-pretrain plots \
	curl-benchmark gpu-check

help:
	@echo "make test            lint + the whole test suite on the CPU (scripts/test.sh)"
	@echo "make train ARGS=...  scripts/main.sh (CURL-SAC training; ARGS go to it)"
	@echo "make bench           all speed/memory benchmarks, small budget (< 10 min on 2 cores)"
	@echo "make plots           learning curves + table from experiments/results/"
	@echo "make curl-benchmark  CURL's six DMControl tasks on a GPU (scripts/run_curl_benchmark.sh)"
	@echo "make gpu-check       tests, benchmarks and short runs on a CUDA machine, < 8 min (scripts/gpu_check.sh)"

test:
	bash scripts/test.sh $(ARGS)

train:
	bash scripts/main.sh $(ARGS)

# Small budgets: figures land in experiments/bench/results/*.json (see experiments/bench/README.md).
bench: bench-replay bench-update bench-env bench-pretrain

bench-replay:
	$(PYTHON) -m experiments.bench.bench_replay --capacity 10000 --repeats 10

bench-update:
	$(PYTHON) -m experiments.bench.bench_update --repeats 3

bench-env:
	$(PYTHON) -m experiments.bench.bench_env --seconds 5

bench-pretrain:
	$(PYTHON) -m experiments.bench.bench_pretrain

plots:
	$(PYTHON) -m experiments.plot_results --results experiments/results

curl-benchmark:
	bash scripts/run_curl_benchmark.sh $(ARGS)

gpu-check:
	bash scripts/gpu_check.sh $(ARGS)

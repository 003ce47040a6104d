# Cairn: `make up` starts the whole stack in the background, `make test` runs the suite.
# Only Python 3.11, pip and make are assumed; uv is installed on first use.
SHELL := /bin/bash
.DEFAULT_GOAL := help

-include .env
export

UV ?= $(shell command -v uv 2>/dev/null || echo $(HOME)/.local/bin/uv)
PY := .venv/bin/python
RUN_DIR := .run

.PHONY: help setup up up-scaled down logs status test test-fast lint bench eval calibrate local-llm-up local-llm-down local-llm-health smoke

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-18s %s\n", $$1, $$2}'

setup: ## create .venv with every service (first run builds llama-cpp-python: ~9 min on 2 cores, waited for)
	@bash scripts/setup.sh

up: ## set up, start BFF, QS and the gateway in the background, print the URL (a first run compiles llama.cpp behind it)
	@bash scripts/setup.sh --background
	@bash scripts/stack.sh up

up-scaled: ## like up, with two QS and two gateways behind one BFF on this box (QS_STORE_URL, CAIRN_REDIS_URL pass through)
	@bash scripts/setup.sh --background
	@bash scripts/stack.sh up-scaled

down: ## stop the stack (one or scaled)
	@bash scripts/stack.sh down

status: ## show what runs and whether it is healthy
	@bash scripts/stack.sh status

logs: ## follow the services' JSON logs
	@bash scripts/stack.sh logs

test: setup ## the whole suite: unit, integration, real model, end-to-end, browser
	@bash scripts/test.sh

test-fast: setup ## the suite without the real-model and browser tests
	@$(PY) -m pytest -q -m "not model and not browser"

lint: setup ## ruff, mypy and the layering contracts (import-linter)
	@.venv/bin/ruff check libs services tests scripts
	@.venv/bin/ruff format --check libs services tests scripts
	@.venv/bin/mypy libs/cairn-core/src services/gateway/src services/query/src services/bff/src
	@.venv/bin/lint-imports --no-cache

bench: setup ## benchmarks; ratios against direct calls measured in the same run
	@$(PY) scripts/bench.py

eval: setup ## right and wrong answers on the shipped and the real-document sets (EVAL_ARGS="--docs DIR --questions FILE": your own)
	@$(PY) scripts/eval.py $(EVAL_ARGS)

calibrate: setup ## choose the answer threshold on a set's tune half, check it on the held-out half (CALIBRATE_ARGS)
	@$(PY) scripts/calibrate.py $(CALIBRATE_ARGS)

local-llm-up: setup ## run llama.cpp's OpenAI-compatible server with the packaged Gemma 3 270M
	@bash scripts/local_llm.sh up

local-llm-down: ## stop the local model server
	@bash scripts/local_llm.sh down

local-llm-health: ## check the local model server
	@bash scripts/local_llm.sh health

smoke: ## check a running stack end to end
	@bash scripts/smoke_chat.sh

# kvmigrate — see README.md for the two commands a newcomer needs.
SHELL := /bin/bash
GO ?= go
ENGINES := $(CURDIR)/.engines
export KVMIGRATE_ENGINES := $(ENGINES)

.PHONY: demo test test-deps engines build lint lint-aws bench bench-cluster clean localstack-demo

## demo: install engines, start a local source and target, seed every type, migrate, print the result
demo: engines build
	./scripts/demo.sh

## test: install engines, lint the AWS application, run the whole suite against real servers (race detector on)
test: engines test-deps lint-aws
	$(GO) vet ./...
	$(GO) test -race -count=1 -timeout 20m ./...

## test-deps: tools the tests run: moto's DynamoDB server (PyPI, pinned: internal/awstest.MotoVersion);
## aws-local-stepfunctions and Node 22 for the Step Functions e2e harness (npm, pinned in internal/sfntest/js)
test-deps:
	python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore 'moto[server]==5.1.22'
	./scripts/sfn-harness.sh

## engines: install/extract Redis 7.0, Valkey 8.0, Redis 8.0, Valkey 8.1 (cached in .engines/)
engines:
	./scripts/engines.sh >/dev/null

## lint-aws: sam validate --lint, cfn-lint, sam build, asl-validator (pinned tools cached in .venv-aws/)
lint-aws:
	./scripts/aws-lint.sh

build:
	$(GO) build -o bin/kvmigrate ./cmd/kvmigrate

## localstack-demo: with Docker and LOCALSTACK_AUTH_TOKEN, deploy the stack into LocalStack and run one
## migration through its API (infra/README.md; not run in CI)
localstack-demo: build
	./infra/localstack/demo.sh

bench: engines build
	./bench/run.sh

## bench-cluster: 3-master Redis 7.0 cluster -> 3-master Valkey 8.0 cluster vs standalone (BENCHMARKS.md;
## results in bench/out/cluster/)
bench-cluster: engines build
	BENCH_PARTS=cluster BENCH_OUT=$${BENCH_OUT:-bench/out/cluster} ./bench/run.sh

clean:
	rm -rf bin

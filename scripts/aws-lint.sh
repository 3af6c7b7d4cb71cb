#!/usr/bin/env bash
# Checks of the SAM application that need AWS's own tools, all offline (no
# account, no Docker): `sam validate --lint`, cfn-lint, `sam build` (the Go
# functions cross-compiled for arm64 with the local go) and asl-validator on
# the state machine rendered with the template's DefinitionSubstitutions.
#
# The Python tools live in .venv-aws/ (git-ignored), created once per pinned
# version pair; asl-validator runs from npx's cache.
set -euo pipefail
cd "$(dirname "$0")/.."

SAM_CLI_VERSION=1.170.0
CFN_LINT_VERSION=1.58.0         # aws-sam-cli 1.170.0 wants cfn-lint >=1.52,<1.59
ASL_VALIDATOR_VERSION=4.0.0     # runs on Node 20

VENV=.venv-aws
OUT=.aws-sam/lint
export SAM_CLI_TELEMETRY=0 AWS_DEFAULT_REGION="${AWS_DEFAULT_REGION:-us-east-1}"

step() { printf '\n== %s\n' "$*"; }
need() { command -v "$1" >/dev/null || { echo "aws-lint: $1 not found: $2" >&2; exit 1; }; }
need python3 "install Python 3 (with the venv module: apt-get install python3-venv)"
need go "install Go (sam build compiles the functions with it)"
need npx "install Node.js 20+ and npm (asl-validator runs with npx)"

start=$SECONDS
stamp="$VENV/.installed-sam-$SAM_CLI_VERSION-cfn-lint-$CFN_LINT_VERSION"
if [[ ! -f $stamp ]]; then
	step "installing aws-sam-cli $SAM_CLI_VERSION and cfn-lint $CFN_LINT_VERSION into $VENV"
	rm -rf "$VENV"
	python3 -m venv "$VENV"
	"$VENV/bin/pip" install --quiet --disable-pip-version-check \
		"aws-sam-cli==$SAM_CLI_VERSION" "cfn-lint==$CFN_LINT_VERSION"
	touch "$stamp"
	echo "installed in $((SECONDS - start))s"
fi

step "sam validate --lint"
"$VENV/bin/sam" validate --lint --template template.yaml

step "cfn-lint template.yaml"
"$VENV/bin/cfn-lint" template.yaml && echo "no findings"

step "sam build"
mkdir -p "$OUT"
if ! "$VENV/bin/sam" build --template template.yaml --parallel >"$OUT/sam-build.log" 2>&1; then
	cat "$OUT/sam-build.log" >&2
	exit 1
fi
grep -E '^(Building codeuri|Build Succeeded)' "$OUT/sam-build.log"
for fn in ApiFunction AnalyzeFunction ExecuteChunkFunction ValidateFunction; do
	[[ -x .aws-sam/build/$fn/bootstrap ]] || { echo "aws-lint: sam build made no $fn/bootstrap" >&2; exit 1; }
done

step "asl-validator $ASL_VALIDATOR_VERSION (definition rendered with the template's substitutions)"
go run ./scripts/render-asl >"$OUT/migration.asl.json"
npx --yes "asl-validator@$ASL_VALIDATOR_VERSION" --json-path "$OUT/migration.asl.json"

echo
echo "aws-lint: all checks passed in $((SECONDS - start))s"

#!/usr/bin/env bash
# make localstack-demo: deploy the SAM application into LocalStack and run one
# migration (Redis 7 -> Valkey 8) through its HTTP API. Needs Docker, the SAM
# CLI, the AWS CLI, samlocal (pip install aws-sam-cli-local), jq and
# LOCALSTACK_AUTH_TOKEN. Not run in CI (no Docker there): see infra/README.md.
set -euo pipefail
cd "$(dirname "$0")/../.."

for tool in docker sam samlocal aws jq; do
	command -v "$tool" >/dev/null || { echo "localstack-demo: $tool not found (see infra/README.md)" >&2; exit 1; }
done

compose=(docker compose -f infra/localstack/docker-compose.yml)
export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_DEFAULT_REGION=us-east-1
endpoint=http://localhost:4566
aws() { command aws --endpoint-url "$endpoint" "$@"; }

echo "== starting LocalStack, Redis 7 and Valkey 8"
"${compose[@]}" up -d --wait

echo "== seeding the source"
KVMIGRATE_TARGET_PASSWORD=kvmigrate-demo-source bin/kvmigrate sample --target redis://default@127.0.0.1:16379 --per-type 20

echo "== storing the passwords as secrets"
secret() { # name password -> ARN
	aws secretsmanager create-secret --name "$1" --secret-string "{\"username\":\"default\",\"password\":\"$2\"}" \
		--query ARN --output text 2>/dev/null ||
		aws secretsmanager describe-secret --secret-id "$1" --query ARN --output text
}
source_secret=$(secret kvmigrate/demo-source kvmigrate-demo-source)
target_secret=$(secret kvmigrate/demo-target kvmigrate-demo-target)

echo "== deploying the stack"
subnet=$(aws ec2 describe-subnets --query 'Subnets[0].SubnetId' --output text)
group=$(aws ec2 describe-security-groups --group-names default --query 'SecurityGroups[0].GroupId' --output text)
sam build
samlocal deploy --stack-name kvmigrate --resolve-s3 --no-confirm-changeset --capabilities CAPABILITY_IAM \
	--parameter-overrides "SubnetIds=$subnet" "SecurityGroupIds=$group"

# The ApiUrl output names amazonaws.com; LocalStack serves HTTP APIs here.
api_id=$(aws apigatewayv2 get-apis --query "Items[?contains(Name, 'kvmigrate')].ApiId | [0]" --output text)
api="http://$api_id.execute-api.localhost.localstack.cloud:4566"

echo "== POST $api/migrations"
body=$(jq -n --arg s "$source_secret" --arg t "$target_secret" '{
	source: {url: "redis://default@redis:6379", secretArn: $s},
	target: {url: "valkey://default@valkey:6379", secretArn: $t},
	mode: "command"}')
id=$(curl -fsS -X POST "$api/migrations" -H 'Content-Type: application/json' -d "$body" | jq -r .id)
echo "job $id"

for _ in $(seq 1 120); do
	job=$(curl -fsS "$api/migrations/$id")
	status=$(jq -r .status <<<"$job")
	echo "  $status $(jq -r '.stage // ""' <<<"$job")"
	case $status in succeeded | failed | blocked | stopped) break ;; esac
	sleep 5
done
jq '{id, status, error, counters, validation}' <<<"$job"
[[ $status == succeeded ]]

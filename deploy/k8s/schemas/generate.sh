#!/usr/bin/env bash
# Regenerate the vendored CRD schemas from the npm packages named in README.md.
#
# The @kubernetes-models packages ship each CRD's OpenAPI schema as TypeScript types (and as
# compiled validators, which Python cannot read); ts-json-schema-generator turns the types
# back into JSON Schema, and tidy.py makes free-form maps free again and drops the prose.
# Needs node and npm (the npm registry only); writes the three *.schema.json files here.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

KEDA=@kubernetes-models/keda@2.0.0
STRIMZI=@kubernetes-models/strimzi-kafka-operator@1.0.1
CNPG=@kubernetes-models/cloudnative-pg@2.0.0
GENERATOR=ts-json-schema-generator@2.4.0

cd "$work"
npm init -y >/dev/null
npm install --no-audit --no-fund --silent "$GENERATOR" typescript "$KEDA" "$STRIMZI" "$CNPG"
m=node_modules/@kubernetes-models
cat >tsconfig.json <<JSON
{"compilerOptions": {"module": "nodenext", "moduleResolution": "nodenext",
 "target": "es2022", "strict": true, "skipLibCheck": true}}
JSON

generate() {  # <d.ts> <interface> <output>
  # --expose none inlines every type: CNPG and the core API both define ConfigMapKeySelector.
  npx ts-json-schema-generator --tsconfig tsconfig.json --no-type-check --expose none \
    --path "$1" --type "$2" -o "$work/raw.json"
  python3 "$here/tidy.py" "$work/raw.json" "$here/$3"
}

generate "$m/keda/keda.sh/v1alpha1/ScaledObject.d.ts" IScaledObject keda.sh_v1alpha1_scaledobject.schema.json
generate "$m/strimzi-kafka-operator/kafka.strimzi.io/v1beta2/KafkaTopic.d.ts" IKafkaTopic kafka.strimzi.io_v1beta2_kafkatopic.schema.json
generate "$m/cloudnative-pg/postgresql.cnpg.io/v1/Cluster.d.ts" ICluster postgresql.cnpg.io_v1_cluster.schema.json

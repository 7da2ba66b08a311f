#!/usr/bin/env bash
# Checks what can be checked of the deployment files without a container runtime or a
# cluster: the Compose file against the Compose specification's schema, every Kubernetes
# manifest against the API's schemas (strict: no unknown field), the kustomization builds, and
# the other YAML files parse. Needs python3 with pip (installs check-jsonschema and
# kubernetes-validate into a temporary virtualenv) and kubectl for the kustomization.
set -euo pipefail
cd "$(dirname "$0")"
venv="$(mktemp -d)"
trap 'rm -rf "$venv"' EXIT
python3 -m venv "$venv"
"$venv/bin/pip" install -q check-jsonschema kubernetes-validate pyyaml
"$venv/bin/check-jsonschema" --builtin-schema vendor.compose-spec compose/compose.yaml
"$venv/bin/kubernetes-validate" --strict --quiet k8s/backends.yaml k8s/config.yaml \
    k8s/registry.yaml k8s/services.yaml k8s/gateway.yaml
echo "kubernetes manifests: valid"
if command -v kubectl >/dev/null; then
    kubectl kustomize k8s >/dev/null
    echo "kustomization: builds"
fi
for file in compose/otel-collector.yaml compose/prometheus.yml compose/grafana-*.yaml; do
    "$venv/bin/python" -c 'import sys, yaml; yaml.safe_load(open(sys.argv[1]))' "$file"
done
echo "the other YAML files: parse"
echo "ok"

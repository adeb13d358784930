#!/usr/bin/env bash
# Lint template.yaml offline: cfn-lint, `sam validate --lint`, and cfn-lint again on the template's
# SAM->CloudFormation translation (cfn-lint 1.x checks SAM resources against SAM's own schema only,
# so e.g. a bad Runtime in Globals or an SQS BatchSize over 10000 passes the first two).
# Uses a virtualenv at <repo>/.local/lint-venv, installing the pinned tools only when missing.
# Usage: infra/local/py/lint.sh  (from any directory). PYTHON picks the interpreter (default python3).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../../.." && pwd)"
venv="$repo/.local/lint-venv"
template="$repo/template.yaml"

# cfn-lint follows requirements.txt so both environments lint alike; aws-sam-cli pins its own translator.
cfn_lint_pin="$(grep -E '^cfn-lint==' "$here/requirements.txt" | head -n 1)"
if [[ -z "$cfn_lint_pin" ]]; then
    echo "lint.sh: no cfn-lint==VERSION line in $here/requirements.txt" >&2
    exit 1
fi
pins=("$cfn_lint_pin" "aws-sam-cli==1.170.0")
stamp="$venv/.leadflow-pins"

if [[ ! -x "$venv/bin/sam" || ! -x "$venv/bin/cfn-lint" || "$(cat "$stamp" 2>/dev/null)" != "${pins[*]}" ]]; then
    echo "lint.sh: installing ${pins[*]} into $venv" >&2
    mkdir -p "$repo/.local"
    if [[ ! -x "$venv/bin/python" ]]; then
        "${PYTHON:-python3}" -m venv "$venv"
    fi
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "${pins[@]}"
    printf '%s' "${pins[*]}" > "$stamp"
fi

# Offline: a region and dummy credentials satisfy SAM's validator; no telemetry, no instance metadata.
export AWS_DEFAULT_REGION=us-east-1
export AWS_REGION=us-east-1
export AWS_ACCESS_KEY_ID=lint-dummy
export AWS_SECRET_ACCESS_KEY=lint-dummy
export AWS_EC2_METADATA_DISABLED=true
export SAM_CLI_TELEMETRY=0
unset AWS_PROFILE AWS_SESSION_TOKEN

cd "$repo"
status=0
echo "lint.sh: cfn-lint template.yaml" >&2
"$venv/bin/cfn-lint" -- template.yaml || status=1
echo "lint.sh: sam validate --lint --template template.yaml" >&2
"$venv/bin/sam" validate --lint --template "$template" || status=1
echo "lint.sh: cfn-lint on the translated CloudFormation" >&2
# Kept after the run (.local is ignored by git) so that reported line numbers can be looked up.
translated="$repo/.local/template.translated.json"
if "$venv/bin/python" "$here/provision.py" --print-cloudformation --template "$template" > "$translated.tmp"; then
    mv "$translated.tmp" "$translated"
    "$venv/bin/cfn-lint" -- "$translated" || status=1
else
    echo "lint.sh: translating template.yaml failed" >&2
    status=1
fi

if [[ $status -ne 0 ]]; then
    echo "lint.sh: FAILED" >&2
else
    echo "lint.sh: template.yaml passes cfn-lint, sam validate --lint and cfn-lint of its translation" >&2
fi
exit $status

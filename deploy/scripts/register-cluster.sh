#!/usr/bin/env bash
# Registers a managed cluster with kubegate: reads the API server address, its CA and the
# token of the kubegate ServiceAccount (deploy/cluster/ applied there) from a kubectl context,
# signs in to kubegate and creates the environment (POST /api/endpoints).
#
#   deploy/scripts/register-cluster.sh --context prod --name production \
#       --kubegate https://kubegate.example.com [--kubegate-ca ca.pem] [--username admin]
#
# The password is read from KUBEGATE_PASSWORD, else asked for. --print writes the request
# body (it holds the token) to stdout instead of sending it. KUBECTL names the kubectl to run.
set -euo pipefail

context=
name=
kubegate=
kubegate_ca=
username=admin
print=false
kubectl_cmd="${KUBECTL:-kubectl}"
die() { echo "register-cluster: $*" >&2; exit 1; }

while [ $# -gt 0 ]; do
    case "$1" in
        --context) context="$2"; shift ;;
        --name) name="$2"; shift ;;
        --kubegate) kubegate="${2%/}"; shift ;;
        --kubegate-ca) kubegate_ca="$2"; shift ;;
        --username) username="$2"; shift ;;
        --print) print=true ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown option $1 (see --help)" ;;
    esac
    shift
done
[ -n "$context" ] || die "--context is required"
[ -n "$name" ] || name="$context"
$print || [ -n "$kubegate" ] || die "--kubegate https://<kubegate host> is required"

kubectl() { "$kubectl_cmd" --context "$context" "$@"; }

# JSON string escaping for names and PEM (backslash, quote, newlines).
json() { printf '%s' "$1" | sed -e 's/\\/\\\\/g' -e 's/"/\\"/g' | awk 'BEGIN{ORS=""} NR>1{print "\\n"} {print}'; }

server="$(kubectl config view --minify --raw -o jsonpath='{.clusters[0].cluster.server}')"
[ -n "$server" ] || die "context $context has no cluster server"
token=
for _ in $(seq 1 30); do
    token="$(kubectl -n kubegate-system get secret kubegate-token -o jsonpath='{.data.token}' 2>/dev/null || true)"
    [ -n "$token" ] && break
    sleep 1
done
[ -n "$token" ] || die "no token in kubegate-system/kubegate-token: apply deploy/cluster/ in context $context first"
token="$(printf '%s' "$token" | base64 -d)"
ca="$(kubectl -n kubegate-system get secret kubegate-token -o jsonpath='{.data.ca\.crt}' | base64 -d)"

body="{\"name\":\"$(json "$name")\",\"url\":\"$(json "$server")\",\"caCert\":\"$(json "$ca")\",\"token\":\"$(json "$token")\"}"
if $print; then
    printf '%s\n' "$body"
    exit 0
fi

command -v curl >/dev/null || die "curl is needed"
curl_opts=(--silent --show-error --fail-with-body)
[ -n "$kubegate_ca" ] && curl_opts+=(--cacert "$kubegate_ca")
password="${KUBEGATE_PASSWORD:-}"
if [ -z "$password" ]; then
    read -r -s -p "kubegate password for $username: " password
    echo >&2
fi
auth="$(printf '{"username":"%s","password":"%s"}' "$(json "$username")" "$(json "$password")" |
    curl "${curl_opts[@]}" -H 'Content-Type: application/json' --data-binary @- "$kubegate/api/auth")" ||
    die "sign-in failed: $auth"
jwt="$(printf '%s' "$auth" | sed -n 's/.*"jwt" *: *"\([^"]*\)".*/\1/p')"
[ -n "$jwt" ] || die "sign-in answered without a token: $auth"
created="$(printf '%s' "$body" | curl "${curl_opts[@]}" -H 'Content-Type: application/json' \
    -H "Authorization: Bearer $jwt" --data-binary @- "$kubegate/api/endpoints")" ||
    die "registering failed: $created"
echo "registered $name: $created"

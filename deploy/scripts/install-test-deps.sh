#!/usr/bin/env bash
# Installs what the deployment checks (tests/deploy) need besides Rust and the machine's
# kubectl.1.33, nats-server and openssl: the schema validator kubernetes-validate from PyPI, in
# its own virtualenv. Idempotent and quick when it is already there; `make deps` runs it.
#
#   deploy/scripts/install-test-deps.sh                    install if missing
#   deploy/scripts/install-test-deps.sh --print-validator  ... then print the validator's path
#
# KUBEGATE_DEPLOY_VENV overrides where the virtualenv goes.
set -euo pipefail

version=1.37.0   # keep in step with KUBERNETES_VALIDATE_VERSION in tests/deploy/src/tools.rs
venv="${KUBEGATE_DEPLOY_VENV:-${HOME}/.cache/kubegate/venv-deploy}"
validator="$venv/bin/kubernetes-validate"

installed() {
    [ -x "$validator" ] && [ "$("$validator" --version 2>/dev/null)" = "$version" ]
}

if ! installed; then
    if ! command -v python3 >/dev/null 2>&1; then
        echo "install-test-deps: python3 is missing (Debian: apt-get install python3 python3-venv)" >&2
        exit 1
    fi
    mkdir -p "$(dirname "$venv")"
    # Built aside and moved into place, so that concurrent runs never see half a virtualenv.
    staging="$venv.tmp-$$"
    rm -rf "$staging"
    trap 'rm -rf "$staging"' EXIT
    if ! python3 -m venv "$staging" >&2; then
        echo "install-test-deps: python3 cannot create a virtualenv (Debian: apt-get install python3-venv)" >&2
        exit 1
    fi
    if ! "$staging/bin/python" -m pip install --quiet --disable-pip-version-check \
        "kubernetes-validate==$version" >&2; then
        echo "install-test-deps: pip could not install kubernetes-validate==$version (is PyPI reachable?)" >&2
        exit 1
    fi
    if ! installed; then
        rm -rf "$venv"
        mv "$staging" "$venv"
        # The venv's scripts name their interpreter by path: fix the moved ones.
        sed -i "1s|^#!.*python.*$|#!$venv/bin/python|" "$venv"/bin/kubernetes-validate "$venv"/bin/pip* 2>/dev/null || true
    fi
    installed || { echo "install-test-deps: $validator does not work after installing" >&2; exit 1; }
fi

if [ "${1:-}" = "--print-validator" ]; then
    echo "$validator"
fi

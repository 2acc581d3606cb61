#!/usr/bin/env bash
# Stops the local stack and forgets it: drops its two databases (kubegate_identity and
# kubegate_kubeconfig on 127.0.0.1:5432) and removes .kubegate (keys, NATS store, logs, spools).
# The next make up starts from nothing, with new keys and a new admin password.
set -euo pipefail
cd "$(dirname "$0")/../.."
source deploy/local/lib.sh
bash deploy/local/down.sh
for db in $LOCAL_DATABASES; do
  psql -h 127.0.0.1 -U postgres -d postgres -v ON_ERROR_STOP=1 -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)"
  echo "  dropped database $db"
done
rm -rf "$KG_DIR"
echo "kubegate: the local stack is gone; make up starts a new one"

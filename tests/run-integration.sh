#!/usr/bin/env bash
# Run the integration tests: bash tests/run-integration.sh [pytest args...]
# (make integration runs it after building). Installs the S3 test server's npm
# packages if they are missing, then runs pytest with Debian's python3 (the
# one that has python3-pytest and python3-boto3); pytest's exit status is ours.
set -euo pipefail
cd "$(dirname "$0")/.."

s3dir=tests/s3server
if [ ! -x "$s3dir/node_modules/.bin/s3rver" ] ||
   [ "$s3dir/package-lock.json" -nt "$s3dir/node_modules/.package-lock.json" ]; then
    echo "== installing the S3 test server (npm ci in $s3dir)"
    (cd "$s3dir" && npm ci --no-audit --no-fund)
fi

export PYTHONDONTWRITEBYTECODE=1
echo "== /usr/bin/python3 -m pytest -v tests/integration $*"
exec /usr/bin/python3 -m pytest -v -p no:cacheprovider --durations=20 tests/integration "$@"

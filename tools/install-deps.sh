#!/usr/bin/env bash
# Install everything bucketfs needs to build and test (make deps runs this).
# Idempotent: installs only missing Debian packages (apt-get update once, and
# only then), and runs `npm ci` for the S3 test server only when its
# node_modules is missing or older than package-lock.json. Debian 12.
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(
    build-essential pkg-config                                   # build
    fuse3 libfuse3-dev libcurl4-openssl-dev libssl-dev           # libraries
    libxml2-dev liblmdb-dev lmdb-utils
    libcmocka-dev valgrind                                       # unit tests (make test-valgrind)
    clang libclang-rt-14-dev                                     # make fuzz (libFuzzer)
    python3-pytest python3-pytest-timeout                        # integration tests
    python3-boto3 python3-botocore s3fs rsync attr
    media-types                                                  # /etc/mime.types: Content-Type of new files
    openssl                                                      # test_tls: throwaway CA
    groff-base                                                   # test_docs: man pages
)
# Installed without their recommended packages: Ceph RGW, the second S3 server of the tests
# (tests/s3server/rgw.py; so about 50 packages), and mpich for the MPI job (tests/mpi/)
LEAN_PACKAGES=(ceph-mon ceph-osd radosgw mpich libmpich-dev)

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null; then
        SUDO=(sudo)
    else
        echo "install-deps: not root and no sudo; install as root: apt-get install ${PACKAGES[*]} ${LEAN_PACKAGES[*]} nodejs npm" >&2
    fi
fi

installed() {   # true if Debian package $1 is installed
    [ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null)" = installed ]
}

missing=()
for p in "${PACKAGES[@]}"; do
    installed "$p" || missing+=("$p")
done
# Node.js and npm may come from Debian (nodejs, npm) or from a vendor's
# nodejs package that bundles npm (which conflicts with Debian's npm): only
# install them when the commands are absent.
command -v node >/dev/null || missing+=(nodejs)
command -v npm >/dev/null || missing+=(npm)

missing_lean=()
for p in "${LEAN_PACKAGES[@]}"; do
    installed "$p" || missing_lean+=("$p")
done

if [ ${#missing[@]} -gt 0 ] || [ ${#missing_lean[@]} -gt 0 ]; then
    echo "== installing: ${missing[*]} ${missing_lean[*]}"
    export DEBIAN_FRONTEND=noninteractive
    "${SUDO[@]}" apt-get update
    [ ${#missing[@]} -eq 0 ] || "${SUDO[@]}" apt-get install -y "${missing[@]}"
    [ ${#missing_lean[@]} -eq 0 ] ||
        "${SUDO[@]}" apt-get install -y --no-install-recommends "${missing_lean[@]}"
else
    echo "== Debian packages: all present"
fi

s3dir=tests/s3server
if [ -x "$s3dir/node_modules/.bin/s3rver" ] &&
   [ ! "$s3dir/package-lock.json" -nt "$s3dir/node_modules/.package-lock.json" ]; then
    echo "== $s3dir/node_modules: up to date"
else
    echo "== npm ci in $s3dir"
    (cd "$s3dir" && npm ci --no-audit --no-fund)
fi
# s3rver fixes the tests rely on (idempotent; also run by npm ci's postinstall)
node "$s3dir/patch-s3rver.js"

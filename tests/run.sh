#!/usr/bin/env bash
# Install everything the test suite needs, then run all of it.
#   bash tests/run.sh            (extra arguments go to pytest)
# Debian packages (real peers: gcc, php-fpm, fcgiwrap, uWSGI) need root or sudo; the Python
# packages go into .venv beside this checkout.
set -euo pipefail
cd "$(dirname "$0")/.."

# php-fpm, fcgiwrap, uwsgi + its python3 plugin: the interop peers (tests/interop/); python3-dev
# builds the `scgi` package's C extension (pip, the test extra); chromium renders the status page;
# strace shows file bodies leave through sendfile(2); ab (apache2-utils) is the HTTP/1.0 keep-alive
# client; git's http-backend is a CGI program mapped at a prefix; curl and openssl are TLS clients;
# pebble is the ACME test CA; slowhttptest is the slow-client attacker; mkpasswd (whois) writes crypt hashes;
# libnss3-tools' certutil puts the local CA into the NSS database Chromium trusts; haproxy is the
# load balancer in front (PROXY protocol v2, X-Forwarded-For); nghttp2-client's nghttp and h2load
# are HTTP/2 clients.
DEBIAN_PACKAGES="gcc libc6-dev python3-venv python3-dev php-fpm fcgiwrap uwsgi uwsgi-plugin-python3 chromium strace
apache2-utils git curl openssl pebble slowhttptest whois libnss3-tools dokuwiki haproxy nghttp2-client"
if command -v apt-get >/dev/null 2>&1; then
    missing=$(for p in $DEBIAN_PACKAGES; do dpkg -s "$p" >/dev/null 2>&1 || echo "$p"; done)
    if [ -n "$missing" ]; then
        sudo=""
        [ "$(id -u)" = 0 ] || sudo="sudo"
        $sudo apt-get update
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y --no-install-recommends $missing
    fi
fi

python=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$python" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e '.[test]'
exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"

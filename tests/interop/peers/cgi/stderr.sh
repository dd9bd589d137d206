#!/bin/sh
# Writes to stderr: fcgiwrap -f passes it on as FCGI_STDERR.
echo "frontd-interop-stderr from $PEER_NAME" >&2
printf 'Content-Type: text/plain\r\n\r\nok\n'

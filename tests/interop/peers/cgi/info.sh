#!/bin/sh
# The CGI meta-variables fcgiwrap passes on, one NAME=value line each.
printf 'Content-Type: text/plain\r\nX-Peer: %s\r\n\r\n' "$PEER_NAME"
for name in REQUEST_METHOD SCRIPT_NAME SCRIPT_FILENAME PATH_INFO QUERY_STRING CONTENT_LENGTH \
            SERVER_NAME SERVER_PORT HTTP_HOST HTTP_PROXY HTTP_X_TEST; do
    eval "value=\${$name-(unset)}"
    printf '%s=%s\n' "$name" "$value"
done
printf 'peer=%s\n' "$PEER_NAME"

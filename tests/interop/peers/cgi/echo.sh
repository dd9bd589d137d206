#!/bin/sh
# Length and SHA-256 of the request body read from stdin.
body=$(mktemp)
trap 'rm -f "$body"' EXIT
head -c "${CONTENT_LENGTH:-0}" > "$body"
printf 'Content-Type: text/plain\r\n\r\n'
printf 'length=%s\n' "$(wc -c < "$body")"
printf 'sha256=%s\n' "$(sha256sum < "$body" | cut -d' ' -f1)"

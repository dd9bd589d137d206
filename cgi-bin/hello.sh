#!/bin/sh
# A CGI script in POSIX shell (RFC 3875): headers, a blank line, then the body.
printf 'Content-Type: text/plain; charset=utf-8\r\n\r\n'
printf 'Hello from a shell CGI script.\n'
printf 'REQUEST_METHOD=%s\n' "$REQUEST_METHOD"
printf 'QUERY_STRING=%s\n' "$QUERY_STRING"
printf 'SCRIPT_NAME=%s\n' "$SCRIPT_NAME"
printf 'PATH_INFO=%s\n' "${PATH_INFO-}"
printf 'SERVER_SOFTWARE=%s\n' "$SERVER_SOFTWARE"

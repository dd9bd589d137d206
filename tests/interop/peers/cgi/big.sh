#!/bin/sh
# 10 MiB of zero bytes.
printf 'Content-Type: application/octet-stream\r\n\r\n'
head -c 10485760 /dev/zero

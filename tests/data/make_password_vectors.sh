#!/bin/sh
# Writes password_vectors.txt's vectors (appended after its header) with the real tools:
# htpasswd (apache2-utils) for $apr1$, $2y$, $5$, $6$ and {SHA}; mkpasswd (whois) for $5$, $6$
# with explicit rounds and $1$.
set -eu
for pw in 'secret' 'pässwörd' 'a' 'exactly-sixteen!' 'a password longer than thirty-two bytes, and longer than sixty-four bytes too: 0123456789'; do
  for flag in -m -s -2 -5; do
    printf '%s\t%s\n' "$pw" "$(htpasswd -nb $flag u "$pw" | sed -n 's/^u://p')"
  done
  printf '%s\t%s\n' "$pw" "$(htpasswd -nb -2 -r 1000 u "$pw" | sed -n 's/^u://p')"
  printf '%s\t%s\n' "$pw" "$(mkpasswd -m sha-256 -R 12345 "$pw")"
  printf '%s\t%s\n' "$pw" "$(mkpasswd -m sha-512 -S 'saltsaltsaltsalt' "$pw")"
  printf '%s\t%s\n' "$pw" "$(mkpasswd -m sha-512 "$pw")"
  printf '%s\t%s\n' "$pw" "$(mkpasswd -m md5crypt "$pw")"
done
for pw in 'secret' 'pässwörd'; do
  printf '%s\t%s\n' "$pw" "$(htpasswd -nbB -C 5 u "$pw" | sed -n 's/^u://p')"
done

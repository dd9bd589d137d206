#!/bin/sh
printf 'Status: 409 Conflict\r\nContent-Type: text/plain\r\nX-Peer-Test: relayed\r\n\r\nconflict from %s\n' "$PEER_NAME"

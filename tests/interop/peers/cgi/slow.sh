#!/bin/sh
sleep 3
printf 'Content-Type: text/plain\r\n\r\nlate\n'

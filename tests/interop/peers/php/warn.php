<?php
// A warning goes to the web server as FCGI_STDERR (php-fpm's log_errors with no error_log).
error_log('frontd-interop-warning');
header('Content-Type: text/plain');
echo "warned\n";

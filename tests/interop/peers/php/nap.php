<?php
// Answers after ?ms= milliseconds (at most 2000): a request that keeps a php-fpm child busy.
usleep(min(2000, max(0, (int)($_GET['ms'] ?? 200))) * 1000);
header('Content-Type: text/plain');
echo 'pid ' . getmypid() . "\n";

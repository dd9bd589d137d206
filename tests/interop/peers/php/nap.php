<?php
// Answers after ?ms= milliseconds (at most 2000): a request that keeps a php-fpm child busy.
// With ?early=1 the first line goes out before the nap (an answer that has started).
header('Content-Type: text/plain');
if (isset($_GET['early'])) {
    echo "early\n";
    while (ob_get_level() > 0) {
        ob_end_flush();
    }
    flush();
}
usleep(min(2000, max(0, (int)($_GET['ms'] ?? 200))) * 1000);
echo 'pid ' . getmypid() . "\n";

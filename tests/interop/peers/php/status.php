<?php
http_response_code(409);
header('Content-Type: text/plain');
header('X-Peer-Test: relayed');
echo 'conflict from ' . getenv('PEER_NAME') . "\n";

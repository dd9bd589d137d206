<?php
// Length and SHA-256 of the raw request body.
$ctx = hash_init('sha256');
$in = fopen('php://input', 'rb');
$length = 0;
while (!feof($in)) {
    $data = fread($in, 65536);
    if ($data === false || $data === '') break;
    $length += strlen($data);
    hash_update($ctx, $data);
}
header('Content-Type: application/json');
echo json_encode(['peer' => getenv('PEER_NAME'), 'length' => $length, 'sha256' => hash_final($ctx),
                  'CONTENT_LENGTH' => $_SERVER['CONTENT_LENGTH'] ?? null]);

<?php
// 10 MiB: the 256-byte ramp repeated, in 64 KiB pieces.
header('Content-Type: application/octet-stream');
$piece = str_repeat(implode('', array_map('chr', range(0, 255))), 256);
for ($i = 0; $i < 160; $i++) {
    echo $piece;
    flush();
}

<?php
sleep(3);
header('Content-Type: text/plain');
echo "late\n";

<?php
header('Content-Type: text/plain');
echo 'index of sub: ' . $_SERVER['SCRIPT_NAME'] . "\n";

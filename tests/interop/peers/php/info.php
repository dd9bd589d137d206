<?php
// What a PHP application sees behind frontd: the $_SERVER entries nginx's fastcgi_params give,
// the parsed query and form fields, and any uploaded file (name, size, SHA-256).
$keys = ['REQUEST_METHOD', 'SCRIPT_NAME', 'SCRIPT_FILENAME', 'PATH_INFO', 'PATH_TRANSLATED',
         'QUERY_STRING', 'REQUEST_URI', 'DOCUMENT_URI', 'DOCUMENT_ROOT', 'PHP_SELF', 'CONTENT_LENGTH',
         'CONTENT_TYPE', 'SERVER_NAME', 'SERVER_PORT', 'SERVER_PROTOCOL', 'REMOTE_ADDR',
         'GATEWAY_INTERFACE', 'REDIRECT_STATUS', 'HTTP_HOST', 'HTTP_PROXY', 'HTTPS', 'HTTP_X_TEST'];
$info = ['peer' => getenv('PEER_NAME')];
foreach ($keys as $key) {
    $info[$key] = $_SERVER[$key] ?? null;
}
$info['GET'] = $_GET;
$info['POST'] = $_POST;
$files = [];
foreach ($_FILES as $field => $file) {
    $files[$field] = ['name' => $file['name'], 'size' => $file['size'], 'error' => $file['error'],
                      'sha256' => $file['error'] === 0 ? hash_file('sha256', $file['tmp_name']) : null];
}
$info['FILES'] = $files;
header('Content-Type: application/json');
header('X-Peer: ' . getenv('PEER_NAME'));
echo json_encode($info);

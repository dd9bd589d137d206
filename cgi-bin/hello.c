/* A CGI program in C (RFC 3875). Build: cc -O2 -o cgi-bin/hello cgi-bin/hello.c */
#include <stdio.h>
#include <stdlib.h>

static const char *env(const char *name)
{
    const char *value = getenv(name);
    return value ? value : "";
}

int main(void)
{
    printf("Content-Type: text/plain; charset=utf-8\r\n\r\n");
    printf("Hello from a C CGI program.\n");
    printf("REQUEST_METHOD=%s\n", env("REQUEST_METHOD"));
    printf("QUERY_STRING=%s\n", env("QUERY_STRING"));
    printf("SCRIPT_NAME=%s\n", env("SCRIPT_NAME"));
    printf("PATH_INFO=%s\n", env("PATH_INFO"));
    return 0;
}

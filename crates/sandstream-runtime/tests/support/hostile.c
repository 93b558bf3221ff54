/* What a hostile program in a sandbox does that busybox cannot: built static by
 * support::hostile_binary (gcc -static) and copied into the test's busybox template.
 *
 *   hostile deep N TARGET  makes N nested directories `d` under the current directory
 *                          through directory fds (past PATH_MAX), with, half-way down and
 *                          at the bottom, a symlink to TARGET (a host path) and a
 *                          directory with a file in it, mode 000
 *   hostile seccomp        tries io_uring, AF_VSOCK and AF_INET sockets and personality()
 *                          values and prints one line per attempt: its name and "ok" or
 *                          the errno name
 *   hostile ptys N SECS    opens pseudo-terminals (/dev/ptmx) until N are open or one
 *                          fails, prints "opened K" and, after a failure, its errno
 *                          name, then holds them open for SECS seconds
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/personality.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef AF_VSOCK
#define AF_VSOCK 40
#endif

static const char *result(long r) {
    static char buf[32];
    if (r >= 0) return "ok";
    switch (errno) {
    case EPERM: return "EPERM";
    case ENOSYS: return "ENOSYS";
    case EBADF: return "EBADF";
    case EFAULT: return "EFAULT";
    case EINVAL: return "EINVAL";
    case EAFNOSUPPORT: return "EAFNOSUPPORT";
    case ENOSPC: return "ENOSPC";
    default: snprintf(buf, sizeof buf, "errno %d", errno); return buf;
    }
}

static int plant(int fd, const char *target) {
    if (symlinkat(target, fd, "to-host") != 0) { perror("symlinkat"); return 1; }
    if (mkdirat(fd, "locked", 0755) != 0) { perror("mkdirat locked"); return 1; }
    int l = openat(fd, "locked", O_RDONLY | O_DIRECTORY);
    int f = l < 0 ? -1 : openat(l, "file", O_CREAT | O_WRONLY, 0644);
    if (f < 0 || fchmod(l, 0) != 0) { perror("locked"); return 1; }
    close(f);
    close(l);
    return 0;
}

static int deep(long n, const char *target) {
    int fd = open(".", O_RDONLY | O_DIRECTORY);
    if (fd < 0) { perror("open ."); return 1; }
    for (long i = 0; i < n; i++) {
        if (i == n / 2 && plant(fd, target)) return 1;
        if (mkdirat(fd, "d", 0755) != 0) { perror("mkdirat"); return 1; }
        int next = openat(fd, "d", O_RDONLY | O_DIRECTORY);
        if (next < 0) { perror("openat"); return 1; }
        close(fd);
        fd = next;
    }
    if (plant(fd, target)) return 1;
    printf("deep %ld\n", n);
    return 0;
}

static int try_seccomp(void) {
    unsigned char params[120];
    memset(params, 0, sizeof params);
    long r = syscall(425 /* io_uring_setup */, 1, params);
    printf("io_uring_setup %s\n", result(r));
    if (r >= 0) close((int)r);
    printf("io_uring_enter %s\n", result(syscall(426, -1, 0, 0, 0, NULL, 0)));
    printf("io_uring_register %s\n", result(syscall(427, -1, 0, NULL, 0)));
    int s = socket(AF_VSOCK, SOCK_STREAM, 0);
    printf("vsock %s\n", result(s));
    if (s >= 0) close(s);
    s = socket(AF_INET, SOCK_STREAM, 0);
    printf("inet %s\n", result(s));
    if (s >= 0) close(s);
    unsigned long values[] = {0x0, 0x8, 0x20000, 0x20008, 0xffffffff,
                              0x40000 /* ADDR_NO_RANDOMIZE */, 0x400000 /* READ_IMPLIES_EXEC */, 0x1,
                              0x100000008 /* 8 with a high bit the kernel ignores */};
    for (size_t i = 0; i < sizeof values / sizeof values[0]; i++) {
        printf("personality 0x%lx %s\n", values[i], result(syscall(SYS_personality, values[i])));
        syscall(SYS_personality, 0UL);
    }
    return 0;
}

static int ptys(long n, long secs) {
    long k = 0;
    int fd = 0;
    while (k < n && (fd = open("/dev/ptmx", O_RDWR | O_NOCTTY)) >= 0) k++;
    printf("opened %ld", k);
    if (fd < 0) printf(" then %s", result(fd));
    printf("\n");
    sleep((unsigned)secs);
    return 0;
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IONBF, 0);
    if (argc == 4 && strcmp(argv[1], "deep") == 0) return deep(atol(argv[2]), argv[3]);
    if (argc == 2 && strcmp(argv[1], "seccomp") == 0) return try_seccomp();
    if (argc == 4 && strcmp(argv[1], "ptys") == 0) return ptys(atol(argv[2]), atol(argv[3]));
    fprintf(stderr, "usage: hostile deep N TARGET | hostile seccomp | hostile ptys N SECS\n");
    return 2;
}

/* Root inside a sandbox, for the tests of its user namespace (issue 21): installed
 * setuid root in a test template, it makes the sandbox user root inside, as `sudo`
 * does in the default template, then runs argv[1..]. The process keeps everything
 * else the agent's commands have (the sandbox's capability bounding set, its seccomp
 * filter, cgroups, rlimits and namespaces): what a command started as root would get.
 * (`runc exec` cannot stand in: it joins the sandbox's user namespace before its
 * network namespace, which the host's user namespace owns, and is refused.) */
#include <grp.h>
#include <stdio.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: asroot PROGRAM [ARG...]\n");
        return 2;
    }
    if (setgroups(0, NULL) != 0 || setgid(0) != 0 || setuid(0) != 0) {
        perror("asroot");
        return 126;
    }
    execv(argv[1], argv + 1);
    perror("asroot: exec");
    return 127;
}

// Opens network flows from inside a sandbox, as a tenant filling the host's
// connection-tracking table would (built static, put in the busybox template by
// flows.rs). Each prints one line:
//   flows udp IP FIRST COUNT      one datagram to each of COUNT ports from FIRST: "sent N"
//   flows churn IP PORT SECONDS   TCP connect and close, again and again:
//                                 "connected N refused M"
//   flows echo IP PORT            a datagram "ping" and its reply within 2 s: "reply ping",
//                                 or "no reply: ERROR"
//   flows connect IP PORT         a TCP connection within 5 s: "connected", or "ERROR"
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static struct sockaddr_in addr(const char *ip, long port) {
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons((unsigned short)port);
    if (inet_pton(AF_INET, ip, &a.sin_addr) != 1) {
        fprintf(stderr, "bad address %s\n", ip);
        exit(2);
    }
    return a;
}

static void timeout(int fd, int opt, long seconds) {
    struct timeval tv = {seconds, 0};
    setsockopt(fd, SOL_SOCKET, opt, &tv, sizeof tv);
}

static int tcp_connect(const char *ip, long port, long seconds) {
    struct sockaddr_in a = addr(ip, port);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return -errno;
    timeout(fd, SO_SNDTIMEO, seconds);  // bounds connect() too
    int r = connect(fd, (struct sockaddr *)&a, sizeof a) == 0 ? 0 : -errno;
    close(fd);
    return r;
}

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
    if (argc == 5 && strcmp(argv[1], "udp") == 0) {
        int fd = socket(AF_INET, SOCK_DGRAM, 0);
        long first = atol(argv[3]), count = atol(argv[4]), sent = 0;
        for (long p = first; p < first + count; p++) {
            struct sockaddr_in a = addr(argv[2], p);
            // A refused flow's ICMP error makes the next send fail with it: not a
            // send that failed, the flow still went out.
            if (sendto(fd, "x", 1, 0, (struct sockaddr *)&a, sizeof a) == 1 || errno == EHOSTUNREACH ||
                errno == ECONNREFUSED)
                sent++;
        }
        printf("sent %ld\n", sent);
        return 0;
    }
    if (argc == 5 && strcmp(argv[1], "churn") == 0) {
        long connected = 0, refused = 0;
        double end = now() + atof(argv[4]);
        while (now() < end) {
            if (tcp_connect(argv[2], atol(argv[3]), 1) == 0) connected++;
            else refused++;
        }
        printf("connected %ld refused %ld\n", connected, refused);
        return 0;
    }
    if (argc == 4 && strcmp(argv[1], "echo") == 0) {
        struct sockaddr_in a = addr(argv[2], atol(argv[3]));
        int fd = socket(AF_INET, SOCK_DGRAM, 0);
        timeout(fd, SO_RCVTIMEO, 2);
        char buf[16] = {0};
        ssize_t n = -1;
        if (sendto(fd, "ping", 4, 0, (struct sockaddr *)&a, sizeof a) == 4) n = recv(fd, buf, sizeof buf - 1, 0);
        if (n > 0) printf("reply %s\n", buf);
        else printf("no reply: %s\n", strerror(errno));
        return n > 0 ? 0 : 1;
    }
    if (argc == 4 && strcmp(argv[1], "connect") == 0) {
        int r = tcp_connect(argv[2], atol(argv[3]), 5);
        printf("%s\n", r == 0 ? "connected" : strerror(-r));
        return r == 0 ? 0 : 1;
    }
    fprintf(stderr, "usage: flows udp|churn|echo|connect ...\n");
    return 2;
}

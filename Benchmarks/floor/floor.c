/*
 * floor: the cheapest possible UDP "DNS server", as a reference for the benchmark.
 *
 * It answers every datagram with the datagram itself, QR set (RFC 1035 4.1.1), using
 * recvmmsg/sendmmsg in batches of 32 on one socket and one thread. Whatever it costs per
 * query is the kernel's loopback UDP path plus the batched syscalls: no real server can be
 * cheaper, so a server's QPS divided by the floor's shows how close it gets.
 *
 * Build: gcc -O2 -Wall -o floor floor.c
 * Use:   floor PORT        (binds 127.0.0.1:PORT; stops on SIGTERM/SIGINT)
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define BATCH 32
#define SIZE 4096

int main(int argc, char **argv) {
    if (argc != 2) { fprintf(stderr, "usage: floor PORT\n"); return 2; }
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)atoi(argv[1]));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) != 0) { perror("bind"); return 1; }
    static char buf[BATCH][SIZE];
    static struct sockaddr_in peers[BATCH];
    static struct iovec iov[BATCH];
    static struct mmsghdr msgs[BATCH];
    for (;;) {
        for (int i = 0; i < BATCH; i++) {
            iov[i].iov_base = buf[i];
            iov[i].iov_len = SIZE;
            msgs[i].msg_hdr.msg_iov = &iov[i];
            msgs[i].msg_hdr.msg_iovlen = 1;
            msgs[i].msg_hdr.msg_name = &peers[i];
            msgs[i].msg_hdr.msg_namelen = sizeof peers[i];
        }
        int n = recvmmsg(fd, msgs, BATCH, MSG_WAITFORONE, NULL);
        if (n <= 0) continue;
        for (int i = 0; i < n; i++) {
            iov[i].iov_len = msgs[i].msg_len;
            if (msgs[i].msg_len >= 3) buf[i][2] |= (char)0x80;
        }
        sendmmsg(fd, msgs, (unsigned)n, 0);
    }
}

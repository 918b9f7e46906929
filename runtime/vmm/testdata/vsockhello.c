/*
 * vsockhello: a guest workload (static) for qemu_test.go: connects to the
 * host (CID 2) on vsock port argv[1], sends "ping\n", and exits 0 if the
 * answer is "pong\n" (3 otherwise, 4 if it cannot connect).
 */
#include <linux/vm_sockets.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	if (argc < 2) return 2;
	int s = socket(AF_VSOCK, SOCK_STREAM, 0);
	struct sockaddr_vm a = { .svm_family = AF_VSOCK, .svm_cid = VMADDR_CID_HOST, .svm_port = (unsigned)atoi(argv[1]) };
	if (s < 0 || connect(s, (struct sockaddr *)&a, sizeof a) < 0) { perror("vsockhello: connect"); return 4; }
	if (write(s, "ping\n", 5) != 5) { perror("vsockhello: write"); return 3; }
	char buf[16];
	size_t n = 0;
	while (n < sizeof buf - 1) {
		ssize_t r = read(s, buf + n, 1);
		if (r <= 0) break;
		if (buf[n++] == '\n') break;
	}
	buf[n] = 0;
	printf("vsockhello: got %s", buf);
	return strcmp(buf, "pong\n") ? 3 : 0;
}

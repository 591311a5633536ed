// SPDX-License-Identifier: Apache-2.0
/*
 * weir-cni: the executable the container runtime calls (CNI bin dir).
 *
 * Why a forwarder in C: on a kind node (and most nodes) the host has no Node.js, and
 * the runtime execs this file on the host, outside any container. The wiring logic
 * lives in the agent (TypeScript, src/cni-plugin/), which already holds the datapath,
 * the endpoint store and the policy controller. So this program is a small static
 * executable with no dependency at all (gcc -static, glibc only) that forwards the
 * request (the CNI_* environment and stdin) over a unix socket to the agent and prints
 * the answer: the Antrea / Kube-OVN / istio-cni pattern.
 *
 * Wire format (one request per connection), see src/cni-plugin/wire.ts:
 *   request:  "WEIRCNI1\n" then "KEY=VALUE\0" for each CNI_* variable, an empty
 *             string ("\0") ending the list, then the stdin bytes; then EOF (shutdown).
 *   response: "<exit code>\n" then the bytes for stdout.
 *
 * Socket: the plugin config's top-level "agentSocket" string, else $WEIR_CNI_SOCKET,
 * else /var/run/weir/cni.sock. Timeouts: 2 s to connect, 30 s for the answer (30
 * parallel ADDs take under 2 s here; a slower answer means a stuck agent, and the
 * runtime's retry after error 11 is the better path). When the agent cannot be
 * reached, drops the connection or does not answer in time, the answer is
 * the spec's error 11 ("try again later"; 50 for STATUS) and the exit status is 1.
 * Nothing is ever written to stdout but the result or the error JSON.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define DEFAULT_SOCKET "/var/run/weir/cni.sock"
#define CONNECT_TIMEOUT_MS 2000
#define ANSWER_TIMEOUT_MS 30000
#define MAX_STDIN (16 << 20)
#define MAX_ANSWER (16 << 20)

extern char **environ;

struct buf {
	char *data;
	size_t len, cap;
};

static int buf_add(struct buf *b, const void *p, size_t n)
{
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 4096;
		while (cap < b->len + n + 1)
			cap *= 2;
		char *d = realloc(b->data, cap);
		if (!d)
			return -1;
		b->data = d;
		b->cap = cap;
	}
	memcpy(b->data + b->len, p, n);
	b->len += n;
	b->data[b->len] = 0;
	return 0;
}

/*
 * Finds the string value of a top-level-looking "key": "value" in the config. Only
 * simple values (no escapes) are taken; anything else falls back to the default.
 * The config is parsed properly by the agent; this is only to find the agent.
 */
static int json_string_field(const char *json, const char *key, char *out, size_t outlen)
{
	char pat[64];
	snprintf(pat, sizeof(pat), "\"%s\"", key);
	const char *p = strstr(json, pat);
	if (!p)
		return -1;
	p += strlen(pat);
	while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
		p++;
	if (*p++ != ':')
		return -1;
	while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
		p++;
	if (*p++ != '"')
		return -1;
	size_t n = 0;
	while (p[n] && p[n] != '"' && p[n] != '\\' && (unsigned char)p[n] >= 0x20)
		n++;
	if (p[n] != '"' || n == 0 || n >= outlen)
		return -1;
	memcpy(out, p, n);
	out[n] = 0;
	return 0;
}

/* Prints a spec error on stdout (msg/details without quotes or backslashes). */
static int cni_error(const char *version, int code, const char *msg, const char *details)
{
	char clean[512];
	size_t n = 0;
	for (const char *s = details; *s && n + 1 < sizeof(clean); s++)
		clean[n++] = (*s == '"' || *s == '\\' || (unsigned char)*s < 0x20) ? '\'' : *s;
	clean[n] = 0;
	printf("{\"cniVersion\":\"%s\",\"code\":%d,\"msg\":\"%s\",\"details\":\"%s\"}\n", version, code, msg, clean);
	fflush(stdout);
	return 1;
}

static long now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

static int wait_fd(int fd, short events, long deadline)
{
	for (;;) {
		long left = deadline - now_ms();
		if (left <= 0)
			return -ETIMEDOUT;
		struct pollfd p = {.fd = fd, .events = events};
		int r = poll(&p, 1, (int)left);
		if (r > 0)
			return 0;
		if (r == 0)
			return -ETIMEDOUT;
		if (errno != EINTR)
			return -errno;
	}
}

static int write_all(int fd, const char *p, size_t n, long deadline)
{
	while (n) {
		int r = wait_fd(fd, POLLOUT, deadline);
		if (r)
			return r;
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
		if (w < 0) {
			if (errno == EINTR || errno == EAGAIN)
				continue;
			return -errno;
		}
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

int main(void)
{
	struct buf in = {0}, req = {0}, ans = {0};
	char version[32] = "1.1.0";
	char sock_path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	const char *cmd = getenv("CNI_COMMAND");
	int status = cmd && strcmp(cmd, "STATUS") == 0;

	/* stdin: the network configuration (may be empty for VERSION). */
	char chunk[65536];
	for (;;) {
		ssize_t n = read(0, chunk, sizeof(chunk));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return cni_error(version, 5, "reading stdin failed", strerror(errno));
		if (n == 0)
			break;
		if (in.len + (size_t)n > MAX_STDIN)
			return cni_error(version, 5, "network configuration too large", "more than 16 MiB on stdin");
		if (buf_add(&in, chunk, (size_t)n))
			return cni_error(version, 5, "out of memory", "");
	}
	if (buf_add(&in, "", 0))
		return cni_error(version, 5, "out of memory", "");
	char v[32];
	if (in.len && json_string_field(in.data, "cniVersion", v, sizeof(v)) == 0)
		strcpy(version, v);
	const char *env_sock = getenv("WEIR_CNI_SOCKET");
	if (in.len && json_string_field(in.data, "agentSocket", sock_path, sizeof(sock_path)) == 0)
		;
	else if (env_sock && strlen(env_sock) < sizeof(sock_path))
		strcpy(sock_path, env_sock);
	else
		strcpy(sock_path, DEFAULT_SOCKET);

	/* request */
	buf_add(&req, "WEIRCNI1\n", 9);
	for (char **e = environ; *e; e++)
		if (strncmp(*e, "CNI_", 4) == 0)
			buf_add(&req, *e, strlen(*e) + 1);
	buf_add(&req, "", 1);
	if (buf_add(&req, in.data, in.len))
		return cni_error(version, 5, "out of memory", "");

	int unavailable = status ? 50 : 11;
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return cni_error(version, unavailable, "weir agent not reachable", strerror(errno));
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	strcpy(sa.sun_path, sock_path);
	long deadline = now_ms() + CONNECT_TIMEOUT_MS;
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
		int err = errno;
		if (err == EINPROGRESS || err == EAGAIN) {
			int r = wait_fd(fd, POLLOUT, deadline);
			socklen_t len = sizeof(err);
			if (r == 0 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err == 0)
				goto connected;
			if (r)
				err = -r;
		}
		char d[512];
		snprintf(d, sizeof(d), "connect %s: %s (is the weir agent running and ready on this node?)",
			 sock_path, strerror(err));
		return cni_error(version, unavailable, "weir agent not reachable, try again later", d);
	}
connected:
	deadline = now_ms() + ANSWER_TIMEOUT_MS;
	int r = write_all(fd, req.data, req.len, deadline);
	if (r == 0)
		shutdown(fd, SHUT_WR);
	for (; r == 0;) {
		r = wait_fd(fd, POLLIN, deadline);
		if (r)
			break;
		ssize_t n = recv(fd, chunk, sizeof(chunk), 0);
		if (n < 0) {
			if (errno == EINTR || errno == EAGAIN)
				continue;
			r = -errno;
			break;
		}
		if (n == 0)
			break;
		if (ans.len + (size_t)n > MAX_ANSWER) {
			r = -E2BIG;
			break;
		}
		buf_add(&ans, chunk, (size_t)n);
	}
	close(fd);
	char *nl = ans.len ? memchr(ans.data, '\n', ans.len) : NULL;
	if (r || !nl) {
		char d[512];
		snprintf(d, sizeof(d), "%s %s: %s", sock_path, r ? "failed" : "closed without an answer",
			 r ? strerror(-r) : "the agent stopped while handling the request");
		return cni_error(version, unavailable, "weir agent did not answer, try again later", d);
	}
	*nl = 0;
	int code = atoi(ans.data);
	size_t off = (size_t)(nl - ans.data) + 1;
	fwrite(ans.data + off, 1, ans.len - off, stdout);
	fflush(stdout);
	return code;
}

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
 * else /var/run/weir/cni.sock. A configuration that is not a JSON object is answered
 * here with the spec's error 6 (7 for an unusable agentSocket), agent or not. Timeouts: 2 s to connect, 30 s for the answer (30
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

#define DEFAULT_SOCKET	   "/var/run/weir/cni.sock"
#define CONNECT_TIMEOUT_MS 2000
#define ANSWER_TIMEOUT_MS  30000
#define MAX_STDIN	   (16 << 20)
#define MAX_ANSWER	   (16 << 20)

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
 * The configuration is read here only as far as forwarding needs: is it JSON at all,
 * and which top-level "cniVersion" and "agentSocket" does it hold (the agent parses
 * it properly). The reader checks the whole text against the JSON grammar (RFC 8259)
 * and looks at members of the top-level object only: a key inside a nested object
 * or array, or text inside a string value, is never taken for one. A repeated key
 * keeps its last value, as JSON.parse in the agent does. Recursive, to a fixed depth.
 */
#define JSON_MAX_DEPTH 512

enum json_state { JSON_ABSENT, JSON_STRING, JSON_OTHER };

/* A top-level member to find; its value is decoded into out when it is a string. */
struct json_field {
	const char *key;
	char *out;
	size_t cap;
	enum json_state state; /* JSON_OTHER: not a string, holds a NUL, or longer than cap - 1 */
};

struct json {
	const char *p, *start, *end;
	const char *expected; /* on failure: what the reader expected at p */
};

static int json_fail(struct json *j, const char *expected)
{
	j->expected = expected;
	return -1;
}

static void json_ws(struct json *j)
{
	while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r'))
		j->p++;
}

static int json_hex4(struct json *j, unsigned *out)
{
	*out = 0;
	for (int i = 0; i < 4; i++, j->p++) {
		if (j->p >= j->end)
			return -1;
		char c = *j->p;
		unsigned d = c >= '0' && c <= '9'   ? (unsigned)(c - '0')
			     : c >= 'a' && c <= 'f' ? (unsigned)(c - 'a' + 10)
			     : c >= 'A' && c <= 'F' ? (unsigned)(c - 'A' + 10)
						    : 16;
		if (d > 15)
			return -1;
		*out = *out << 4 | d;
	}
	return 0;
}

/* Appends n bytes to out[cap]; *len becomes (size_t)-1 once they do not fit. */
static void json_put(char *out, size_t cap, size_t *len, const char *b, size_t n)
{
	if (!out || *len == (size_t)-1)
		return;
	if (*len + n >= cap) {
		*len = (size_t)-1;
		return;
	}
	memcpy(out + *len, b, n);
	*len += n;
	out[*len] = 0;
}

/* Appends code point cp as UTF-8 (a lone surrogate as its 3-byte form, as WTF-8). */
static void json_put_cp(char *out, size_t cap, size_t *len, unsigned cp)
{
	char b[4];
	size_t n;
	if (cp == 0) {
		*len = (size_t)-1; /* no NUL inside a C string */
		return;
	}
	if (cp < 0x80) {
		b[0] = (char)cp;
		n = 1;
	} else if (cp < 0x800) {
		b[0] = (char)(0xc0 | cp >> 6);
		b[1] = (char)(0x80 | (cp & 0x3f));
		n = 2;
	} else if (cp < 0x10000) {
		b[0] = (char)(0xe0 | cp >> 12);
		b[1] = (char)(0x80 | (cp >> 6 & 0x3f));
		b[2] = (char)(0x80 | (cp & 0x3f));
		n = 3;
	} else {
		b[0] = (char)(0xf0 | cp >> 18);
		b[1] = (char)(0x80 | (cp >> 12 & 0x3f));
		b[2] = (char)(0x80 | (cp >> 6 & 0x3f));
		b[3] = (char)(0x80 | (cp & 0x3f));
		n = 4;
	}
	json_put(out, cap, len, b, n);
}

/*
 * Reads the string at j->p (its opening quote). With out, decodes it into out[cap]
 * and sets *len to its length, or to (size_t)-1 when it does not fit or holds a NUL.
 * Return: 0, or -1 when the text is not a JSON string.
 */
static int json_string(struct json *j, char *out, size_t cap, size_t *len)
{
	size_t dummy;
	if (!len)
		len = &dummy;
	*len = 0;
	if (out && cap)
		out[0] = 0;
	j->p++;
	for (;;) {
		if (j->p >= j->end)
			return json_fail(j, "a closing quote");
		unsigned char c = (unsigned char)*j->p;
		if (c == '"') {
			j->p++;
			return 0;
		}
		if (c < 0x20)
			return json_fail(j, "no control character inside a string");
		if (c != '\\') {
			json_put(out, cap, len, j->p++, 1);
			continue;
		}
		if (++j->p >= j->end)
			return json_fail(j, "an escape");
		static const char esc[] = "\"\\/bfnrt", val[] = "\"\\/\b\f\n\r\t";
		char e = *j->p++;
		const char *simple = e ? strchr(esc, e) : NULL;
		if (simple) {
			json_put(out, cap, len, &val[simple - esc], 1);
			continue;
		}
		if (e != 'u')
			return json_fail(j, "a valid escape");
		unsigned cp, lo;
		if (json_hex4(j, &cp))
			return json_fail(j, "four hex digits");
		if (cp >= 0xd800 && cp < 0xdc00 && j->end - j->p >= 6 && j->p[0] == '\\' && j->p[1] == 'u') {
			const char *save = j->p;
			j->p += 2;
			if (json_hex4(j, &lo))
				return json_fail(j, "four hex digits");
			if (lo >= 0xdc00 && lo < 0xe000)
				cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
			else
				j->p = save; /* a lone high surrogate; the next escape stands alone */
		}
		json_put_cp(out, cap, len, cp);
	}
}

static int json_digits(struct json *j)
{
	const char *s = j->p;
	while (j->p < j->end && *j->p >= '0' && *j->p <= '9')
		j->p++;
	return j->p > s ? 0 : json_fail(j, "a digit");
}

static int json_number(struct json *j)
{
	if (*j->p == '-')
		j->p++;
	if (j->p < j->end && *j->p == '0')
		j->p++;
	else if (json_digits(j))
		return -1;
	if (j->p < j->end && *j->p == '.') {
		j->p++;
		if (json_digits(j))
			return -1;
	}
	if (j->p < j->end && (*j->p == 'e' || *j->p == 'E')) {
		j->p++;
		if (j->p < j->end && (*j->p == '+' || *j->p == '-'))
			j->p++;
		if (json_digits(j))
			return -1;
	}
	return 0;
}

static int json_value(struct json *j, int depth, struct json_field *fields, size_t nfields);

/* One "name": value member of an object; fields: the members to find, or NULL. */
static int json_member(struct json *j, int depth, struct json_field *fields, size_t nfields)
{
	char key[32];
	size_t klen;
	json_ws(j);
	if (j->p >= j->end || *j->p != '"')
		return json_fail(j, "a member name");
	if (json_string(j, fields ? key : NULL, sizeof(key), &klen))
		return -1;
	json_ws(j);
	if (j->p >= j->end || *j->p != ':')
		return json_fail(j, "':'");
	j->p++;
	json_ws(j);
	struct json_field *f = NULL;
	for (size_t i = 0; fields && klen != (size_t)-1 && i < nfields; i++)
		if (strcmp(key, fields[i].key) == 0)
			f = &fields[i];
	if (f && j->p < j->end && *j->p == '"') {
		size_t vlen;
		if (json_string(j, f->out, f->cap, &vlen))
			return -1;
		f->state = vlen == (size_t)-1 ? JSON_OTHER : JSON_STRING;
		return 0;
	}
	if (f)
		f->state = JSON_OTHER;
	return json_value(j, depth + 1, NULL, 0);
}

/*
 * An object or an array (j->p at its '{' or '['); fields: the members to find in
 * an object (top level only), or NULL.
 */
static int json_container(struct json *j, int depth, struct json_field *fields, size_t nfields)
{
	char close = *j->p == '{' ? '}' : ']';
	j->p++;
	json_ws(j);
	if (j->p < j->end && *j->p == close) {
		j->p++;
		return 0;
	}
	for (;;) {
		if (close == '}' ? json_member(j, depth, fields, nfields) : json_value(j, depth + 1, NULL, 0))
			return -1;
		json_ws(j);
		if (j->p < j->end && *j->p == ',') {
			j->p++;
			continue;
		}
		if (j->p < j->end && *j->p == close) {
			j->p++;
			return 0;
		}
		return json_fail(j, close == '}' ? "',' or '}'" : "',' or ']'");
	}
}

static int json_literal(struct json *j, const char *word)
{
	size_t n = strlen(word);
	if ((size_t)(j->end - j->p) < n || memcmp(j->p, word, n) != 0)
		return json_fail(j, "a value");
	j->p += n;
	return 0;
}

static int json_value(struct json *j, int depth, struct json_field *fields, size_t nfields)
{
	json_ws(j);
	if (depth > JSON_MAX_DEPTH)
		return json_fail(j, "at most 512 levels of nesting");
	if (j->p >= j->end)
		return json_fail(j, "a value");
	switch (*j->p) {
	case '{':
		return json_container(j, depth, fields, nfields);
	case '[':
		return json_container(j, depth, NULL, 0);
	case '"':
		return json_string(j, NULL, 0, NULL);
	case 't':
		return json_literal(j, "true");
	case 'f':
		return json_literal(j, "false");
	case 'n':
		return json_literal(j, "null");
	default:
		if (*j->p == '-' || (*j->p >= '0' && *j->p <= '9'))
			return json_number(j);
		return json_fail(j, "a value");
	}
}

/*
 * json_top_fields() - check that text[len] is one JSON value and, when it is an
 * object, fill in the fields found among its members. On malformed text, *expected
 * and *at say what was expected where (a byte offset).
 * Return: 1 for an object, 0 for any other JSON value, -1 for malformed text.
 */
static int json_top_fields(const char *text, size_t len, struct json_field *fields, size_t nfields,
			   const char **expected, size_t *at)
{
	struct json j = {.p = text, .start = text, .end = text + len};
	for (size_t i = 0; i < nfields; i++)
		fields[i].state = JSON_ABSENT;
	json_ws(&j);
	int object = j.p < j.end && *j.p == '{';
	int r = json_value(&j, 0, fields, nfields);
	if (r == 0) {
		json_ws(&j);
		if (j.p < j.end)
			r = json_fail(&j, "the end of the input");
	}
	if (r) {
		*expected = j.expected;
		*at = (size_t)(j.p - j.start);
		return -1;
	}
	return object;
}

/* Commands whose stdin must be the network configuration (VERSION tolerates anything). */
static int takes_config(const char *cmd)
{
	static const char *const cmds[] = {"ADD", "DEL", "CHECK", "GC", "STATUS"};
	for (size_t i = 0; cmd && i < sizeof(cmds) / sizeof(cmds[0]); i++)
		if (strcmp(cmd, cmds[i]) == 0)
			return 1;
	return 0;
}

/* A cniVersion that can go into the error JSON as it is. */
static int plain_version(const char *v)
{
	if (!*v)
		return 0;
	for (; *v; v++)
		if (!((*v >= '0' && *v <= '9') || (*v >= 'a' && *v <= 'z') || (*v >= 'A' && *v <= 'Z') ||
		      strchr(".+-", *v)))
			return 0;
	return 1;
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
	char v[32], conf_sock[sizeof(sock_path)];
	struct json_field fields[] = {
		{.key = "cniVersion", .out = v, .cap = sizeof(v)},
		{.key = "agentSocket", .out = conf_sock, .cap = sizeof(conf_sock)},
	};
	const char *expected = "";
	size_t at = 0;
	int kind = json_top_fields(in.data, in.len, fields, 2, &expected, &at);
	if (kind == 1 && fields[0].state == JSON_STRING && plain_version(v))
		strcpy(version, v);
	if (takes_config(cmd)) {
		/* The agent would answer the same; no need to reach it (nor to retry). */
		if (kind < 0) {
			char d[128];
			snprintf(d, sizeof(d), "invalid JSON at byte %zu: expected %s", at, expected);
			return cni_error(version, 6, "failed to decode the network configuration", d);
		}
		if (kind == 0)
			return cni_error(version, 6, "failed to decode the network configuration",
					 "expected a JSON object");
		if (fields[1].state == JSON_OTHER || (fields[1].state == JSON_STRING && conf_sock[0] != '/'))
			return cni_error(version, 7, "invalid agentSocket", "an absolute path of at most 107 bytes");
	}
	const char *env_sock = getenv("WEIR_CNI_SOCKET");
	if (kind == 1 && fields[1].state == JSON_STRING && conf_sock[0] == '/')
		strcpy(sock_path, conf_sock);
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
		snprintf(d, sizeof(d), "connect %s: %s (is the weir agent running and ready on this node?)", sock_path,
			 strerror(err));
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

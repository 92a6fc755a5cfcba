// SPDX-License-Identifier: GPL-2.0
/*
 * sockfwd: prototype L4 TCP forwarder whose data path is a BPF sockmap
 * (SOCKHASH + sk_skb stream verdict redirecting to the partner's egress).
 * User space only accepts, connects, pairs the sockets and handles EOF/close.
 *
 *   sockfwd run -c FILE [--drop-caps]
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <linux/sockios.h>
#include <linux/tcp.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <grp.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include "sockfwd.skel.h"

#ifndef SO_COOKIE
#define SO_COOKIE 57
#endif

struct peer {
	__u64 peer;
	__u64 bytes;
	__u32 dir;
	__u32 pad;
};

enum { C = 0, B = 1 }; /* side: client, backend */

struct conn {
	int fd[2];
	__u64 ck[2];
	int paired;
	int eof[2];      /* side received FIN */
	int shut[2];     /* we sent FIN (SHUT_WR) on side */
	int pending;     /* in the pending list */
	int kern[2];     /* direction side->partner runs in the kernel (side has the verdict) */
	int user;        /* some direction is relayed in user space (fallback) */
	char *buf[2];    /* user-space relay buffer for direction side->partner */
	int blen[2], boff[2];
	long long wbase[2]; /* data_written() at pairing: an active open counts its SYN in bytes_acked */
	long long eof_ms[2];
};

#define RELAY_BUF 65536
static long fallback_conns, hybrid_conns;

static struct conn **byfd;
static int nbyfd;
static int ep;
static int fd_targets, fd_active, fd_peers, fd_totals;
static struct sockaddr_in backend_addr;
static long max_conns = 1000000;
static long nconns, accepted, closed_ok, aborted, forced, connect_fail, pair_fail;
static struct conn **pend;
static int npend, cappend;

static int debug, naive_eof;
#define DBG(...) do { if (debug) fprintf(stderr, __VA_ARGS__); } while (0)

static long long now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000LL + ts.tv_nsec / 1000000;
}

static void die(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

static int parse_addr(const char *s, struct sockaddr_in *a)
{
	char host[128];
	const char *colon = strrchr(s, ':');
	if (!colon || colon - s >= (long)sizeof(host))
		return -1;
	memcpy(host, s, colon - s);
	host[colon - s] = 0;
	memset(a, 0, sizeof(*a));
	a->sin_family = AF_INET;
	a->sin_port = htons(atoi(colon + 1));
	return inet_pton(AF_INET, host, &a->sin_addr) == 1 ? 0 : -1;
}

/* value after "key:" on a line, trimmed of spaces and quotes */
static int line_value(const char *line, const char *key, char *out, size_t n)
{
	const char *p = line;
	while (*p == ' ' || *p == '\t' || *p == '-')
		p++;
	size_t kl = strlen(key);
	if (strncmp(p, key, kl) != 0)
		return 0;
	p += kl;
	while (*p == ' ' || *p == '\'' || *p == '"')
		p++;
	size_t i = 0;
	while (*p && *p != '\n' && *p != ' ' && *p != '\'' && *p != '"' && *p != ',' && *p != '}' &&
	       i + 1 < n)
		out[i++] = *p++;
	out[i] = 0;
	return i > 0;
}

static void parse_config(const char *path, struct sockaddr_in *listen_addr)
{
	FILE *f = fopen(path, "r");
	char line[512], v[256];
	int have_b = 0, have_l = 0;
	if (!f)
		die("open %s: %s", path, strerror(errno));
	while (fgets(line, sizeof(line), f)) {
		if (!have_b && line_value(line, "address:", v, sizeof(v))) {
			if (parse_addr(v, &backend_addr))
				die("bad backend address %s", v);
			have_b = 1;
		} else if (!have_l && line[0] == ' ' && line_value(line, "listen:", v, sizeof(v))) {
			if (parse_addr(v, listen_addr))
				die("bad listen address %s", v);
			have_l = 1;
		} else if (line_value(line, "max_connections:", v, sizeof(v))) {
			max_conns = atol(v);
		}
	}
	fclose(f);
	if (!have_b || !have_l)
		die("%s: need backend address: and apiserver listen:", path);
}

static void setfd(int fd, struct conn *c)
{
	if (fd >= nbyfd)
		die("fd %d beyond table", fd);
	byfd[fd] = c;
}

static __u64 cookie(int fd)
{
	__u64 ck = 0;
	socklen_t l = sizeof(ck);
	if (getsockopt(fd, SOL_SOCKET, SO_COOKIE, &ck, &l))
		return 0;
	return ck;
}

static void add_pending(struct conn *c)
{
	if (c->pending)
		return;
	if (npend == cappend) {
		cappend = cappend ? cappend * 2 : 64;
		pend = realloc(pend, cappend * sizeof(*pend));
	}
	pend[npend++] = c;
	c->pending = 1;
}

static void del_pending(struct conn *c)
{
	if (!c->pending)
		return;
	for (int i = 0; i < npend; i++)
		if (pend[i] == c) {
			pend[i] = pend[--npend];
			break;
		}
	c->pending = 0;
}

/* abort: RST both (SO_LINGER 0) unless the side already finished cleanly */
static void conn_close(struct conn *c, int abort)
{
	if (c->paired) {
		bpf_map_delete_elem(fd_peers, &c->ck[C]);
		bpf_map_delete_elem(fd_peers, &c->ck[B]);
	}
	del_pending(c);
	for (int s = 0; s < 2; s++) {
		if (c->fd[s] < 0)
			continue;
		if (abort) {
			struct linger lg = {1, 0};
			setsockopt(c->fd[s], SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
		}
		byfd[c->fd[s]] = NULL;
		free(c->buf[s]);
		close(c->fd[s]); /* also unlinks it from both SOCKHASHes */
	}
	DBG("close conn %d/%d abort %d\n", c->fd[C], c->fd[B], abort);
	if (abort)
		aborted++;
	else
		closed_ok++;
	nconns--;
	free(c);
}

static void set_nodelay(int fd)
{
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

static void on_accept(int lfd)
{
	for (;;) {
		int cfd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (cfd < 0) {
			if (errno == EAGAIN || errno == EINTR || errno == ECONNABORTED)
				return;
			fprintf(stderr, "accept: %s\n", strerror(errno));
			usleep(10000);
			return;
		}
		accepted++;
		if (nconns >= max_conns) {
			close(cfd);
			continue;
		}
		int bfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (bfd < 0) {
			fprintf(stderr, "socket: %s\n", strerror(errno));
			close(cfd);
			continue;
		}
		set_nodelay(cfd);
		set_nodelay(bfd);
		struct conn *c = calloc(1, sizeof(*c));
		c->fd[C] = cfd;
		c->fd[B] = bfd;
		nconns++;
		setfd(cfd, c);
		setfd(bfd, c);
		if (connect(bfd, (struct sockaddr *)&backend_addr, sizeof(backend_addr)) && errno != EINPROGRESS) {
			connect_fail++;
			conn_close(c, 1);
			continue;
		}
		struct epoll_event ev = {.events = EPOLLOUT, .data.fd = bfd};
		epoll_ctl(ep, EPOLL_CTL_ADD, bfd, &ev);
	}
}

static long long data_written(int fd);

/* Both connected: hand the data path to the kernel. A direction whose source
 * socket cannot get the verdict (SOCKHASH only takes ESTABLISHED sockets, so a
 * peer that already sent FIN is refused) is relayed in user space instead;
 * each destination is fed by exactly one of the two, so nothing interleaves. */
static int pair(struct conn *c)
{
	struct peer pv;
	int tgt[2] = {0, 0};
	for (int s = 0; s < 2; s++) {
		c->ck[s] = cookie(c->fd[s]);
		if (!c->ck[s])
			return -1;
	}
	/* 1. targets (no prog): the partner must be redirectable before any verdict runs */
	for (int s = 0; s < 2; s++) {
		__u64 v = c->fd[s];
		tgt[s] = bpf_map_update_elem(fd_targets, &c->ck[s], &v, BPF_NOEXIST) == 0;
		if (!tgt[s] && errno != EOPNOTSUPP)
			return -1;
	}
	if (tgt[C] && tgt[B]) {
		/* 2. pairing */
		for (int s = 0; s < 2; s++) {
			memset(&pv, 0, sizeof(pv));
			pv.peer = c->ck[!s];
			pv.dir = s; /* C(0): client->backend */
			if (bpf_map_update_elem(fd_peers, &c->ck[s], &pv, BPF_NOEXIST))
				return -1;
		}
		c->paired = 1;
		for (int s = 0; s < 2; s++)
			c->wbase[s] = data_written(c->fd[s]);
		/* 3. activate the verdict on each (fails with EOPNOTSUPP after FIN) */
		for (int s = 0; s < 2; s++) {
			__u64 v = c->fd[s];
			c->kern[s] = bpf_map_update_elem(fd_active, &c->ck[s], &v, BPF_NOEXIST) == 0;
			if (!c->kern[s] && errno != EOPNOTSUPP)
				return -1;
		}
	} else {
		/* no redirect target possible: plain sockets, relay both ways */
		for (int s = 0; s < 2; s++)
			if (tgt[s])
				bpf_map_delete_elem(fd_targets, &c->ck[s]);
	}
	c->paired = 1;
	/* 4. bytes that arrived before step 3 sit in the receive queue; setting
	 * SO_RCVLOWAT calls tcp_data_ready() -> the psock's data_ready -> the
	 * verdict drains the queue in order. No user-space copy, no reordering. */
	for (int s = 0; s < 2; s++) {
		int one = 1;
		if (c->kern[s])
			setsockopt(c->fd[s], SOL_SOCKET, SO_RCVLOWAT, &one, sizeof(one));
	}
	c->user = !c->kern[C] || !c->kern[B];
	if (c->user) {
		if (c->kern[C] || c->kern[B])
			hybrid_conns++;
		else
			fallback_conns++;
	}
	/* 5. kernel directions: only FIN/errors matter; user directions: data too */
	__u32 evs = EPOLLRDHUP | EPOLLET | (c->user ? EPOLLIN | EPOLLOUT : 0);
	struct epoll_event ev = {.events = evs, .data.fd = c->fd[B]};
	epoll_ctl(ep, EPOLL_CTL_MOD, c->fd[B], &ev);
	ev.data.fd = c->fd[C];
	epoll_ctl(ep, EPOLL_CTL_ADD, c->fd[C], &ev);
	return 0;
}

/* user-space relay of direction s->partner; -1: connection broken */
static int pump(struct conn *c, int s)
{
	int o = !s;
	if (c->kern[s])
		return 0;
	if (!c->buf[s])
		c->buf[s] = malloc(RELAY_BUF);
	for (;;) {
		if (c->blen[s] > c->boff[s]) {
			ssize_t w = send(c->fd[o], c->buf[s] + c->boff[s], c->blen[s] - c->boff[s], MSG_NOSIGNAL);
			if (w < 0)
				return errno == EAGAIN || errno == EINTR ? 0 : -1;
			c->boff[s] += w;
			if (c->boff[s] == c->blen[s])
				c->boff[s] = c->blen[s] = 0;
			continue;
		}
		if (c->eof[s]) {
			if (!c->shut[o]) {
				shutdown(c->fd[o], SHUT_WR);
				c->shut[o] = 1;
			}
			return 0;
		}
		ssize_t r = recv(c->fd[s], c->buf[s], RELAY_BUF, 0);
		if (r > 0) {
			c->blen[s] = r;
			c->boff[s] = 0;
		} else if (r == 0) {
			c->eof[s] = 1;
		} else {
			return errno == EAGAIN || errno == EINTR ? 0 : -1;
		}
	}
}

/* data bytes received on fd (FIN excluded) */
static long long data_received(int fd, int eof)
{
	struct tcp_info ti;
	socklen_t l = sizeof(ti);
	memset(&ti, 0, sizeof(ti));
	if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &l))
		return -1;
	return (long long)ti.tcpi_bytes_received - (eof ? 1 : 0);
}

/* data bytes written into fd's send queue so far (before our FIN) */
static long long data_written(int fd)
{
	struct tcp_info ti;
	socklen_t l = sizeof(ti);
	int outq = 0;
	memset(&ti, 0, sizeof(ti));
	if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &l))
		return -1;
	if (ioctl(fd, SIOCOUTQ, &outq))
		return -1;
	return (long long)ti.tcpi_bytes_acked + outq;
}

/* side s got FIN: forward it to the partner once every byte s received has
 * gone through the verdict AND left the partner's psock backlog (i.e. sits in
 * the partner's TCP send queue). Shutting down earlier would drop the backlog. */
static void try_forward_eof(struct conn *c, int s, long long now)
{
	int o = !s;
	struct peer pv;
	if (!c->kern[s] || !c->eof[s] || c->shut[o])
		return;
	long long got = data_received(c->fd[s], 1);
	long long wr = data_written(c->fd[o]) - c->wbase[o];
	if (bpf_map_lookup_elem(fd_peers, &c->ck[s], &pv))
		pv.bytes = (__u64)-1;
	int done = naive_eof || (got >= 0 && (__u64)got == pv.bytes && (__u64)wr == pv.bytes);
	if (!done && now - c->eof_ms[s] > 10000) {
		fprintf(stderr, "forced EOF: side %d got %lld redirected %llu written %lld\n", s, got,
			(unsigned long long)pv.bytes, wr);
		forced++;
		done = 1;
	}
	DBG("eof side %d: got %lld redirected %llu written %lld done %d\n", s, got,
	    (unsigned long long)pv.bytes, wr, done);
	if (done) {
		shutdown(c->fd[o], SHUT_WR);
		c->shut[o] = 1;
	}
}

static void check_conn(struct conn *c, long long now)
{
	try_forward_eof(c, C, now);
	try_forward_eof(c, B, now);
	if (c->shut[C] && c->shut[B])
		conn_close(c, 0);
	else if ((!c->kern[C] || !c->eof[C] || c->shut[B]) && (!c->kern[B] || !c->eof[B] || c->shut[C]))
		del_pending(c);
	else
		add_pending(c);
}

static void on_event(int fd, __u32 events)
{
	struct conn *c = byfd[fd];
	if (!c)
		return;
	int s = c->fd[B] == fd ? B : C;
	DBG("event fd %d side %d events 0x%x paired %d\n", fd, s, events, c->paired);
	if (!c->paired) { /* backend connect finished */
		int err = 0;
		socklen_t l = sizeof(err);
		getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &l);
		if (err || (events & (EPOLLERR | EPOLLHUP))) {
			connect_fail++;
			conn_close(c, 1);
			return;
		}
		if (pair(c)) {
			fprintf(stderr, "pair: %s\n", strerror(errno));
			pair_fail++;
			conn_close(c, 1);
			return;
		}
		if (c->user && (pump(c, C) < 0 || pump(c, B) < 0)) {
			conn_close(c, 1);
			return;
		}
		check_conn(c, now_ms());
		return;
	}
	if (events & EPOLLERR) {
		conn_close(c, 1);
		return;
	}
	if (c->kern[s] && (events & (EPOLLRDHUP | EPOLLHUP)) && !c->eof[s]) {
		c->eof[s] = 1;
		c->eof_ms[s] = now_ms();
	}
	if (c->user && (pump(c, C) < 0 || pump(c, B) < 0)) {
		conn_close(c, 1);
		return;
	}
	check_conn(c, now_ms());
}

static void drop_caps(void)
{
	const char *u = getenv("SOCKFWD_SETUID"); /* e.g. 65534: also leave uid 0 */
	if (u) {
		if (setgroups(0, NULL) || setgid(atoi(u)) || setuid(atoi(u)))
			die("setuid: %s", strerror(errno));
		fprintf(stderr, "now uid %d\n", getuid());
	}
	struct __user_cap_header_struct h = {.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
	struct __user_cap_data_struct d[2];
	memset(d, 0, sizeof(d));
	if (syscall(SYS_capset, &h, d))
		die("capset: %s", strerror(errno));
	fprintf(stderr, "dropped all capabilities\n");
}

static void usage(void)
{
	die("usage: sockfwd run -c FILE [--drop-caps]");
}

int main(int argc, char **argv)
{
	const char *cfg = NULL;
	int dropcaps = getenv("SOCKFWD_DROP_CAPS") && !strcmp(getenv("SOCKFWD_DROP_CAPS"), "1");
	if (argc < 2 || strcmp(argv[1], "run"))
		usage();
	for (int i = 2; i < argc; i++) {
		if (!strcmp(argv[i], "-c") && i + 1 < argc)
			cfg = argv[++i];
		else if (!strcmp(argv[i], "--drop-caps"))
			dropcaps = 1;
		else
			usage();
	}
	if (!cfg)
		usage();
	debug = getenv("SOCKFWD_DEBUG") != NULL;
	/* experiment: shutdown(SHUT_WR) the partner as soon as EOF is seen */
	naive_eof = getenv("SOCKFWD_NAIVE_EOF") != NULL;

	struct rlimit rl;
	getrlimit(RLIMIT_NOFILE, &rl);
	rl.rlim_cur = rl.rlim_max;
	setrlimit(RLIMIT_NOFILE, &rl);
	nbyfd = rl.rlim_cur > 4000000 ? 4000000 : (int)rl.rlim_cur;
	byfd = calloc(nbyfd, sizeof(*byfd));

	struct sockaddr_in laddr;
	parse_config(cfg, &laddr);

	struct sockfwd_bpf *skel = sockfwd_bpf__open_and_load();
	if (!skel)
		die("loading BPF object failed (need CAP_BPF + CAP_NET_ADMIN)");
	fd_targets = bpf_map__fd(skel->maps.targets);
	fd_active = bpf_map__fd(skel->maps.active);
	fd_peers = bpf_map__fd(skel->maps.peers);
	fd_totals = bpf_map__fd(skel->maps.totals);
	if (getenv("SOCKFWD_PARSER") &&
	    bpf_prog_attach(bpf_program__fd(skel->progs.parse), fd_active, BPF_SK_SKB_STREAM_PARSER, 0))
		die("attach parser: %s", strerror(errno));
	if (bpf_prog_attach(bpf_program__fd(skel->progs.fwd), fd_active, BPF_SK_SKB_STREAM_VERDICT, 0))
		die("attach verdict: %s", strerror(errno));

	int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	int one = 1;
	setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(lfd, (struct sockaddr *)&laddr, sizeof(laddr)) || listen(lfd, 4096))
		die("bind/listen: %s", strerror(errno));

	if (dropcaps)
		drop_caps();

	sigset_t ss;
	sigemptyset(&ss);
	sigaddset(&ss, SIGTERM);
	sigaddset(&ss, SIGINT);
	sigprocmask(SIG_BLOCK, &ss, NULL);
	signal(SIGPIPE, SIG_IGN);
	int sfd = signalfd(-1, &ss, SFD_CLOEXEC | SFD_NONBLOCK);

	ep = epoll_create1(EPOLL_CLOEXEC);
	struct epoll_event ev = {.events = EPOLLIN, .data.fd = lfd};
	epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
	ev.data.fd = sfd;
	epoll_ctl(ep, EPOLL_CTL_ADD, sfd, &ev);

	char lb[64], bb[64];
	inet_ntop(AF_INET, &laddr.sin_addr, lb, sizeof(lb));
	inet_ntop(AF_INET, &backend_addr.sin_addr, bb, sizeof(bb));
	fprintf(stderr, "sockfwd listening on %s:%d, backend %s:%d (sockmap data path)\n", lb,
		ntohs(laddr.sin_port), bb, ntohs(backend_addr.sin_port));

	struct epoll_event evs[256];
	int stop = 0;
	while (!stop) {
		int n = epoll_wait(ep, evs, 256, npend ? 1 : -1);
		if (n < 0 && errno != EINTR)
			die("epoll_wait: %s", strerror(errno));
		for (int i = 0; i < n; i++) {
			int fd = evs[i].data.fd;
			if (fd == lfd)
				on_accept(lfd);
			else if (fd == sfd)
				stop = 1;
			else
				on_event(fd, evs[i].events);
		}
		long long now = now_ms();
		for (int i = npend - 1; i >= 0; i--)
			if (i < npend)
				check_conn(pend[i], now);
	}

	__u64 t[3] = {0, 0, 0};
	for (__u32 k = 0; k < 3; k++)
		bpf_map_lookup_elem(fd_totals, &k, &t[k]);
	fprintf(stderr,
		"sockfwd totals: client->backend %llu bytes, backend->client %llu bytes, "
		"failed redirects %llu; accepted %ld, closed %ld, aborted %ld, open %ld, "
		"forced EOFs %ld, connect failures %ld, pair failures %ld, "
		"user-space fallback %ld, hybrid %ld\n",
		(unsigned long long)t[0], (unsigned long long)t[1], (unsigned long long)t[2], accepted,
		closed_ok, aborted, nconns, forced, connect_fail, pair_fail, fallback_conns, hybrid_conns);
	sockfwd_bpf__destroy(skel);
	return 0;
}

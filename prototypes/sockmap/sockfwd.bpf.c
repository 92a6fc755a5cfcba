// SPDX-License-Identifier: GPL-2.0
/* sockmap forwarding: each socket's stream verdict redirects its data to the
 * egress of its partner socket (looked up by socket cookie). */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct peer {
	__u64 peer;   /* partner's socket cookie */
	__u64 bytes;  /* bytes redirected from this socket to the partner */
	__u32 dir;    /* 0: client->backend, 1: backend->client */
	__u32 pad;
};

#define MAXSOCKS 65536

/* Redirect targets: no programs attached, so inserting here only creates a psock. */
struct {
	__uint(type, BPF_MAP_TYPE_SOCKHASH);
	__uint(max_entries, MAXSOCKS);
	__type(key, __u64);
	__type(value, __u64);
} targets SEC(".maps");

/* Inserting a socket here switches its receive path to the verdict program. */
struct {
	__uint(type, BPF_MAP_TYPE_SOCKHASH);
	__uint(max_entries, MAXSOCKS);
	__type(key, __u64);
	__type(value, __u64);
} active SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAXSOCKS);
	__type(key, __u64);
	__type(value, struct peer);
} peers SEC(".maps");

/* [0] bytes client->backend, [1] bytes backend->client, [2] failed redirects */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 3);
	__type(key, __u32);
	__type(value, __u64);
} totals SEC(".maps");

SEC("sk_skb/stream_verdict")
int fwd(struct __sk_buff *skb)
{
	__u64 c = bpf_get_socket_cookie(skb);
	struct peer *p = bpf_map_lookup_elem(&peers, &c);
	__u32 len = skb->len, i;
	__u64 *t;

	if (!p)
		return SK_PASS; /* unpaired (being torn down): keep it on this socket */
	/* A bare FIN arrives as a 0-byte skb: redirecting it would make the
	 * partner's backlog call sendmsg after we shut it down (EPIPE -> sk_err).
	 * The FIN itself is handled by user space (EPOLLRDHUP -> shutdown). */
	if (len == 0)
		return SK_DROP;
	__u64 k = p->peer;
	if (bpf_sk_redirect_hash(skb, &targets, &k, 0) != SK_PASS) {
		i = 2;
		t = bpf_map_lookup_elem(&totals, &i);
		if (t)
			__sync_fetch_and_add(t, 1);
		return SK_DROP;
	}
	__sync_fetch_and_add(&p->bytes, len);
	i = p->dir & 1;
	t = bpf_map_lookup_elem(&totals, &i);
	if (t)
		__sync_fetch_and_add(t, len);
	return SK_PASS;
}

char LICENSE[] SEC("license") = "GPL";

/* optional (SOCKFWD_PARSER=1): strparser mode, each chunk is a whole message */
SEC("sk_skb/stream_parser")
int parse(struct __sk_buff *skb)
{
	return skb->len;
}

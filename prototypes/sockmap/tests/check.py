#!/usr/bin/env python3
"""Correctness checks for a TCP forwarder (loopback only).

  check.py backend PORT                 # run the test backend (asyncio)
  check.py client PROXYPORT TEST [N]    # TEST: pipe | half | big | idle (N conns) | all

Backend protocol: the first line picks a mode.
  PIPE\n  then lines "REQ i <pad>\n" -> "RESP i <pad>\n" each (echo per line)
  HALF\n  then bytes until EOF -> replies "<count> <sha256>\n" and closes
  BIG n\n -> sends n pseudo-random bytes, closes immediately (no lingering)
  ECHO\n  echoes everything
"""
import asyncio, hashlib, os, socket, sys, time


def payload(n, seed):
    out = bytearray()
    h = hashlib.sha256(str(seed).encode()).digest()
    while len(out) < n:
        h = hashlib.sha256(h).digest()
        out += h * 64
    return bytes(out[:n])


async def handle(r, w):
    try:
        line = await r.readline()
        if line.startswith(b"PIPE"):
            while True:
                l = await r.readline()
                if not l:
                    break
                w.write(b"RESP" + l[3:])
                await w.drain()
        elif line.startswith(b"HALF"):
            h = hashlib.sha256()
            n = 0
            while True:
                d = await r.read(65536)
                if not d:
                    break
                n += len(d)
                h.update(d)
            w.write(b"%d %s\n" % (n, h.hexdigest().encode()))
            await w.drain()
        elif line.startswith(b"BIG"):
            n = int(line.split()[1])
            seed = int(line.split()[2])
            sock = w.get_extra_info("socket")
            # blocking sendall then close(): data still in the kernel send queue
            raw = socket.socket(fileno=os.dup(sock.fileno()))
            raw.setblocking(True)
            raw.sendall(payload(n, seed))
            raw.close()
        elif line.startswith(b"STREAM"):
            n, sent = int(line.split()[1]), 0
            chunk = b"s" * (1 << 20)
            sock = w.get_extra_info("socket")
            raw = socket.socket(fileno=os.dup(sock.fileno()))
            raw.setblocking(True)
            try:
                while sent < n:
                    sent += raw.send(chunk)
            except OSError as e:
                pass
            print(f"STREAM: backend wrote {sent >> 20} MiB", file=sys.stderr, flush=True)
            raw.close()
        elif line.startswith(b"HOLD"):
            await asyncio.sleep(30)  # never read: a stalled consumer
        elif line.startswith(b"ECHO"):
            while True:
                d = await r.read(65536)
                if not d:
                    break
                w.write(d)
                await w.drain()
    except Exception as e:
        print("backend error", e, file=sys.stderr)
    finally:
        w.close()


async def backend(port):
    srv = await asyncio.start_server(handle, "127.0.0.1", port, backlog=4096)
    print("backend listening", port, file=sys.stderr, flush=True)
    async with srv:
        await srv.serve_forever()


def conn(port):
    s = socket.create_connection(("127.0.0.1", port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    s.settimeout(10)
    return s


def recv_all(s):
    buf = bytearray()
    while True:
        d = s.recv(1 << 20)
        if not d:
            return bytes(buf)
        buf += d


def t_pipe(port, it):
    s = conn(port)
    reqs = b"PIPE\n" + b"".join(b"REQ %d %s\n" % (i, b"x" * (i * 37 % 500)) for i in range(100))
    s.sendall(reqs)  # all 100 requests back to back, right after connect
    want = b"".join(b"RESP %d %s\n" % (i, b"x" * (i * 37 % 500)) for i in range(100))
    got = bytearray()
    while len(got) < len(want):
        d = s.recv(65536)
        if not d:
            break
        got += d
    s.close()
    return bytes(got) == want, f"{len(got)}/{len(want)}"


def t_half(port, it, delay=0):
    n = [100, 65536, 1 << 20, 3 << 20][it % 4] + it
    data = payload(n, it)
    s = conn(port)
    if delay:
        time.sleep(delay)  # let the proxy pair the sockets first: kernel path
    s.sendall(b"HALF\n" + data)
    s.shutdown(socket.SHUT_WR)  # immediately half-close
    resp = recv_all(s)
    s.close()
    want = b"%d %s\n" % (n, hashlib.sha256(data).hexdigest().encode())
    return resp == want, f"sent {n}, backend says {resp[:80]!r}"


def t_big(port, it):
    n = 1 << 20
    s = conn(port)
    s.sendall(b"BIG %d %d\n" % (n, it))
    got = recv_all(s)
    s.close()
    return got == payload(n, it), f"got {len(got)}/{n} bytes, equal={got == payload(n, it)}"


def t_idle(port, n):
    socks = []
    bad = 0
    t0 = time.time()
    for i in range(n):
        s = socket.create_connection(("127.0.0.1", port))
        s.settimeout(10)
        s.sendall(b"ECHO\n" + b"apivip-idle-ping")
        got = b""
        while len(got) < 16:
            d = s.recv(16 - len(got))
            if not d:
                break
            got += d
        if got != b"apivip-idle-ping":
            bad += 1
        socks.append(s)
    t1 = time.time()
    print(f"idle: {n} connections open, {bad} bad echoes, {1e6*(t1-t0)/n:.0f} us per connect+echo")
    time.sleep(2)
    # still alive? ping every 10th again
    bad2 = 0
    for s in socks[::10]:
        s.sendall(b"apivip-idle-ping")
        got = b""
        while len(got) < 16:
            d = s.recv(16 - len(got))
            if not d:
                break
            got += d
        bad2 += got != b"apivip-idle-ping"
    print(f"idle: after 2 s, re-pinged {len(socks[::10])}: {bad2} bad")
    for s in socks:
        s.close()
    return bad + bad2


def main():
    if sys.argv[1] == "backend":
        asyncio.run(backend(int(sys.argv[2])))
        return
    port = int(sys.argv[2])
    test = sys.argv[3]
    n = int(sys.argv[4]) if len(sys.argv) > 4 else 50
    if test == "idle":
        sys.exit(1 if t_idle(port, n) else 0)
    tests = {"pipe": t_pipe, "half": t_half, "half2": lambda p, i: t_half(p, i, 0.02), "big": t_big}
    names = list(tests) if test == "all" else [test]
    fails = 0
    for name in names:
        bad = 0
        t0 = time.time()
        for it in range(n):
            try:
                ok, info = tests[name](port, it)
            except Exception as e:
                ok, info = False, repr(e)
            if not ok:
                bad += 1
                print(f"  {name} #{it} FAILED: {info}")
        print(f"{name}: {n - bad}/{n} ok ({time.time() - t0:.2f}s)")
        fails += bad
    sys.exit(1 if fails else 0)


if __name__ == "__main__":
    main()

# Opens N connections through the proxy, each sends 16 bytes and reads them back,
# then holds all open; prints the proxy's VmRSS growth per connection; closes all.
import socket, sys, time, resource
n, port, pid = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE); resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
def rss():
    for l in open(f"/proc/{pid}/status"):
        if l.startswith("VmRSS"): return int(l.split()[1])
base = rss(); socks = []; t0 = time.time()
PING = b"apivip-idle-ping"
for i in range(n):
    s = socket.create_connection(("127.0.0.1", port)); s.settimeout(10)
    s.sendall(PING)
    got = b""
    while len(got) < 16:
        d = s.recv(16 - len(got))
        if not d: raise SystemExit(f"conn {i}: EOF after {got!r}")
        got += d
    assert got == PING, got
    socks.append(s)
time.sleep(1.0)
after = rss()
print(f"{n} conns echoed ok in {time.time()-t0:.1f}s; proxy RSS {base} -> {after} KiB: {(after-base)*1024/n:.0f} B/conn")
# still alive? ping a few again
for s in socks[:10] + socks[-10:]:
    s.sendall(PING); assert s.recv(16) == PING
print("re-ping of 20 held conns ok")
for s in socks: s.close()

#!/usr/bin/env python3
"""Open N connections through the proxy, each sends ECHO + 16 bytes; verify echoes; hold 2 s."""
import resource, socket, sys, time
port, n = int(sys.argv[1]), int(sys.argv[2])
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
t0 = time.time()
socks = []
for i in range(n):
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"ECHO\napivip-idle-ping")
    socks.append(s)
t1 = time.time()
bad = 0
for s in socks:
    s.settimeout(10)
    got = b""
    while len(got) < 16:
        d = s.recv(16 - len(got))
        if not d:
            break
        got += d
    bad += got != b"apivip-idle-ping"
t2 = time.time()
print(f"{n} conns: connect+send {t1-t0:.2f}s, echoes {t2-t1:.2f}s, bad {bad}", flush=True)
time.sleep(float(sys.argv[3]) if len(sys.argv) > 3 else 2)
for s in socks:
    s.close()
sys.exit(1 if bad else 0)

#!/usr/bin/env python3
"""Reverse backpressure: backend streams 1 GiB, the client does not read for SECS s
(like a slow watch/LIST client). How much piles up in kernel memory?"""
import socket, sys, time
port, secs = int(sys.argv[1]), float(sys.argv[2])
def memfree():
    for l in open("/proc/meminfo"):
        if l.startswith("MemFree:"):
            return int(l.split()[1])
m0 = memfree()
s = socket.create_connection(("127.0.0.1", port))
s.sendall(b"STREAM %d\n" % (1 << 30))
time.sleep(secs)
print(f"client not reading for {secs}s: MemFree dropped {(m0-memfree())/1024:.0f} MiB")
s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
s.close()

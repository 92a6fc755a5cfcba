#!/usr/bin/env python3
"""Backpressure: push data for SECS seconds towards a backend that never reads.
With a user-space proxy the sender stalls once socket buffers fill (a few MB);
report how much the sender could write and how much kernel memory that took."""
import socket, sys, time
port, secs = int(sys.argv[1]), float(sys.argv[2])
def memfree():
    for l in open("/proc/meminfo"):
        if l.startswith("MemFree:"):
            return int(l.split()[1])
def tcpmem():
    for l in open("/proc/net/sockstat"):
        if l.startswith("TCP:"):
            f = l.split(); return int(f[f.index("mem") + 1]) * 4  # pages -> KiB
m0, t0mem = memfree(), tcpmem()
s = socket.create_connection(("127.0.0.1", port))
s.sendall(b"HOLD\n")
s.setblocking(False)
chunk = b"x" * (1 << 20)
sent = 0
end = time.time() + secs
while time.time() < end:
    try:
        sent += s.send(chunk)
    except BlockingIOError:
        time.sleep(0.001)
    if m0 - memfree() > 3_000_000:
        print("stopping: >3 GB of memory used"); break
time.sleep(0.3)
print(f"sender wrote {sent/2**20:.0f} MiB in {secs}s to a non-reading backend; "
      f"MemFree dropped {(m0-memfree())/1024:.0f} MiB; sockstat TCP mem {t0mem/1024:.0f} -> {tcpmem()/1024:.0f} MiB")
s.close()
time.sleep(0.5)
print(f"after close: MemFree vs start {(m0-memfree())/1024:.0f} MiB")

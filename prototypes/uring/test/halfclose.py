import socket
# 1) HTTP/1.0 through the proxy to nginx, client half-closes after the request:
s = socket.create_connection(("127.0.0.1", 42080)); s.sendall(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n"); s.shutdown(socket.SHUT_WR)
data = b""
while True:
    d = s.recv(65536)
    if not d: break
    data += d
print("http/1.0 after client FIN:", data.split(b"\r\n")[0], len(data), "bytes, then EOF")
# 2) echo backend: send 1 MiB, half-close, read it all back, then EOF (backend closes after our FIN).
s = socket.create_connection(("127.0.0.1", 42300)); payload = bytes(range(256)) * 4096
import threading
t = threading.Thread(target=lambda: (s.sendall(payload), s.shutdown(socket.SHUT_WR))); t.start()
got = bytearray()
while True:
    d = s.recv(65536)
    if not d: break
    got += d
t.join(); print("echo 1 MiB + FIN:", len(got), "bytes back, equal:", bytes(got) == payload)

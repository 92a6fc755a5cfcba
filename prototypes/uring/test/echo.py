# Echo-once-then-hold server (like the bench's holder): echoes whatever arrives.
import selectors, socket, sys
port = int(sys.argv[1])
sel = selectors.DefaultSelector()
ls = socket.socket(); ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind(("127.0.0.1", port)); ls.listen(4096); ls.setblocking(False)
sel.register(ls, selectors.EVENT_READ)
while True:
    for key, _ in sel.select():
        s = key.fileobj
        if s is ls:
            try:
                c, _ = ls.accept(); c.setblocking(False); sel.register(c, selectors.EVENT_READ)
            except OSError:
                pass
        else:
            try:
                d = s.recv(65536)
            except OSError:
                d = b""
            if d:
                s.sendall(d)
            else:
                sel.unregister(s); s.close()

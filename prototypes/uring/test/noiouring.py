# Runs argv[1:] with io_uring_setup/enter/register blocked by seccomp (EPERM),
# like Docker's default profile, via libseccomp through ctypes.
import ctypes, os, sys
lib = ctypes.CDLL("libseccomp.so.2")
lib.seccomp_init.restype = ctypes.c_void_p
ctx = lib.seccomp_init(ctypes.c_uint32(0x7fff0000))  # SCMP_ACT_ALLOW
for name in (b"io_uring_setup", b"io_uring_enter", b"io_uring_register"):
    nr = lib.seccomp_syscall_resolve_name(name)
    assert lib.seccomp_rule_add(ctypes.c_void_p(ctx), ctypes.c_uint32(0x00050000 | 1), nr, 0) == 0  # ERRNO(EPERM)
assert lib.seccomp_load(ctypes.c_void_p(ctx)) == 0
os.execv(sys.argv[1], sys.argv[1:])

r"""The grading sandbox: every submission's kernel runs where it can change nothing that lasts.

``nbgrader autograde`` runs each submission's cells in a Jupyter kernel. Without a sandbox that
kernel is a process of the instructor's user: an answer cell can rewrite the installed
reference (``gdlib/averages.py``), the grader, numpy, the gradebook or another student's
files, and so change the grades of every submission graded after it. With the sandbox
(``c.Execute.kernel_manager_class = "gdgrade.sandbox.SandboxedKernelManager"`` in
``nbgrader_config.py``) each kernel starts through ``python -m gdgrade.sandbox``, which, on
Linux, before it starts the kernel:

1. enters new user, PID and mount namespaces (``unshare(2)``; the user namespace maps the
   invoking user to root inside, so this works for root and, where unprivileged user
   namespaces are allowed, for an ordinary user too);
2. makes every mount **read-only** (``mount_setattr(2)``, recursively from ``/``), then mounts a
   fresh, size-limited ``tmpfs`` on an empty scratch folder (the kernel's ``HOME``, ``TMPDIR``,
   IPython and matplotlib directories live there) and on ``/dev/shm``: the only places the
   kernel can write,
   discarded when it exits, so each submission starts from pristine files;
3. **hides** the instructor's files behind empty read-only mounts: the source notebooks
   (solutions and hidden tests), the gradebook, the other submissions, autograded copies and
   feedback, downloads, the repository's ``.git`` and Jupyter's runtime directory (other
   kernels' connection keys) -- the paths ``hidden_paths`` lists; its own autograded folder
   (the kernel's working directory) stays visible, read-only;
4. mounts a new ``/proc``: the kernel sees only its own processes, so it cannot signal, trace
   or read the environment of the grading process or of anything else on the machine;
5. sets resource limits (``RESOURCE_LIMITS``: processes, address space, CPU time, file size,
   no core dumps), drops every capability and sets ``no_new_privs``; then starts the kernel
   (PID 1 of the namespace reaps and forwards the kernel manager's signals -- interrupt,
   terminate -- to it).

Everything a submission does is therefore lost when its kernel exits, and the next submission
is graded against pristine copies of gdlib, gdgrade and everything else. The reference and the
grader are out of every submission's reach; within its own kernel a submission can still
tamper with its own grading (they share one process), which is what ``gdgrade.grading``'s
guard and ``gdgrade.scan`` are for.

When the namespaces cannot be created (not Linux, unprivileged user namespaces disabled, a
container that forbids ``unshare``) the kernel does not start and the error says why. Setting
``GDGRADE_SANDBOX=off`` in the environment of ``nbgrader`` grades without the sandbox (then any
submission can change other grades: only for trusted notebooks, e.g. the instructor's own).
"""

import ctypes
import ctypes.util
import errno
import os
import resource
import signal
import sys
import tempfile
from pathlib import Path

SANDBOX_VARIABLE = "GDGRADE_SANDBOX"

# Resource limits of a sandboxed kernel: (resource, soft = hard limit). Address space is
# generous because numpy/torch reserve far more virtual memory than they touch.
RESOURCE_LIMITS = {
    # Processes and threads: a fork bomb stops there. Linux counts every process of the real
    # user on the machine against it (the namespace does not change that), so it leaves room
    # for the instructor's other work.
    "RLIMIT_NPROC": 1024,
    "RLIMIT_AS": 16 * 2**30,  # bytes of address space
    "RLIMIT_CPU": 900,  # CPU seconds for the whole notebook
    "RLIMIT_FSIZE": 256 * 2**20,  # largest file it may write (in its tmpfs)
    "RLIMIT_CORE": 0,
}
TMPFS_SIZE = "512m"  # the kernel's writable /tmp

# --- Linux constants (x86_64 and aarch64 share them) ------------------------------------------
CLONE_NEWNS, CLONE_NEWUSER, CLONE_NEWPID = 0x00020000, 0x10000000, 0x20000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_BIND = 0x1, 0x2, 0x4, 0x1000
MS_MOVE, MS_REC, MS_PRIVATE, MS_REMOUNT = 0x2000, 0x4000, 0x40000, 0x20
AT_RECURSIVE, MOUNT_ATTR_RDONLY = 0x8000, 0x1
PR_SET_NO_NEW_PRIVS, PR_CAPBSET_DROP = 38, 24
_MOUNT_SETATTR = {"x86_64": 442, "aarch64": 442}
_CAPSET = {"x86_64": 126, "aarch64": 91}
AT_FDCWD = -100


class SandboxError(RuntimeError):
    """The sandbox could not be set up; the message says which step failed and why."""


def _libc():
    return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        code = ctypes.get_errno()
        raise SandboxError(f"{what} failed: {os.strerror(code)} (errno {errno.errorcode.get(code)})")


class _MountAttr(ctypes.Structure):
    _fields_ = [("attr_set", ctypes.c_uint64), ("attr_clr", ctypes.c_uint64),
                ("propagation", ctypes.c_uint64), ("userns_fd", ctypes.c_uint64)]


class _Sys:
    """The few system calls the sandbox needs, through libc."""

    def __init__(self):
        self.libc = _libc()
        self.machine = os.uname().machine

    def unshare(self, flags: int, what: str) -> None:
        _check(self.libc.unshare(flags), f"unshare({what})")

    def mount(self, source, target, fstype, flags, data=None, what=None) -> None:
        encode = (lambda s: None if s is None else os.fsencode(s))
        _check(self.libc.mount(encode(source), encode(target), encode(fstype),
                               ctypes.c_ulong(flags), encode(data)),
               what or f"mount {fstype or source} on {target}")

    def read_only_tree(self, path: str) -> None:
        """Every mount at and below ``path`` read-only (``mount_setattr``, Linux >= 5.12)."""
        number = _MOUNT_SETATTR.get(self.machine)
        if number is None:
            raise SandboxError(f"mount_setattr: unknown system call number on {self.machine}")
        attr = _MountAttr(MOUNT_ATTR_RDONLY, 0, 0, 0)
        result = self.libc.syscall(ctypes.c_long(number), ctypes.c_int(AT_FDCWD),
                                   os.fsencode(path), ctypes.c_uint(AT_RECURSIVE),
                                   ctypes.byref(attr), ctypes.c_size_t(ctypes.sizeof(attr)))
        _check(0 if result == 0 else -1, f"mount_setattr(read-only) on {path}")

    def drop_capabilities(self) -> None:
        """No capability now nor after ``exec``: empty bounding, permitted, inheritable sets."""
        _check(self.libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl(NO_NEW_PRIVS)")
        cap = 0
        while self.libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) == 0:
            cap += 1
        header = (ctypes.c_uint32 * 2)(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3, this task
        data = (ctypes.c_uint32 * 6)()
        number = _CAPSET.get(self.machine)
        if number is not None:
            _check(self.libc.syscall(ctypes.c_long(number), header, data), "capset")


def _write(path: str, text: str) -> None:
    with open(path, "w", encoding="ascii") as f:
        f.write(text)


def _empty_file(sys_calls: _Sys, folder: Path) -> Path:
    """An empty file on a read-only tmpfs mounted on ``folder``: the cover of hidden files.
    (Not /dev/null: writes to a device succeed even on a read-only mount.)"""
    folder.mkdir()
    sys_calls.mount("tmpfs", str(folder), "tmpfs", MS_NOSUID | MS_NODEV, "size=4k,mode=0555",
                    what="the cover of hidden files")
    (folder / "empty").touch(mode=0o444)
    sys_calls.mount(None, str(folder), None, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV,
                    what="making the cover of hidden files read-only")
    return folder / "empty"


def _hide(sys_calls: _Sys, path: Path, cover: Path) -> None:
    """Cover ``path`` with an empty read-only mount: a tmpfs on a folder, the empty file
    ``cover`` on a file."""
    if path.is_dir():
        sys_calls.mount("tmpfs", str(path), "tmpfs", MS_NOSUID | MS_NODEV | MS_RDONLY,
                        "size=16k,mode=0755", what=f"hiding {path}")
    elif path.exists():
        sys_calls.mount(str(cover), str(path), None, MS_BIND, what=f"hiding {path}")
        sys_calls.mount(None, str(path), None, MS_REMOUNT | MS_BIND | MS_RDONLY,
                        what=f"making the cover of {path} read-only")


def _hide_except(sys_calls: _Sys, hidden: Path, keep: Path, holder: Path) -> None:
    """Hide folder ``hidden`` but for ``keep`` (a folder inside it), which stays visible."""
    holder.mkdir()
    sys_calls.mount(str(keep), str(holder), None, MS_BIND | MS_REC, what=f"holding {keep}")
    sys_calls.mount("tmpfs", str(hidden), "tmpfs", MS_NOSUID | MS_NODEV, "size=16k,mode=0755",
                    what=f"hiding {hidden}")
    target = hidden / keep.relative_to(hidden)
    target.mkdir(parents=True)
    sys_calls.mount(str(holder), str(target), None, MS_MOVE, what=f"showing {keep}")
    sys_calls.mount(None, str(hidden), None, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV,
                    what=f"making {hidden} read-only")
    holder.rmdir()


def _set_limits() -> None:
    for name, value in RESOURCE_LIMITS.items():
        limit = getattr(resource, name)
        _, hard = resource.getrlimit(limit)
        value = value if hard == resource.RLIM_INFINITY else min(value, hard)
        resource.setrlimit(limit, (value, value))


def _kernel_environment(home: Path, scratch: Path) -> dict:
    # Never the instructor's secrets: GDCOURSE_GRADING_SALT makes the hidden inputs of the
    # out-of-process verification unpredictable, and code in the kernel could print it.
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("JPY_", "JUPYTER_", "GDCOURSE_")) and k != SANDBOX_VARIABLE}
    env.update(HOME=str(home), TMPDIR=str(scratch), IPYTHONDIR=str(home / ".ipython"),
               MPLCONFIGDIR=str(home / ".matplotlib"), JUPYTER_RUNTIME_DIR=str(home / "runtime"),
               JUPYTER_DATA_DIR=str(home / "jupyter"), PYTHONDONTWRITEBYTECODE="1")
    return env


def _prepare_namespaces(sys_calls: _Sys) -> None:
    """User namespace (invoking uid/gid -> 0), then a PID namespace for the next child."""
    uid, gid = os.getuid(), os.getgid()
    sys_calls.unshare(CLONE_NEWUSER, "user namespace")
    _write("/proc/self/setgroups", "deny")
    _write("/proc/self/uid_map", f"0 {uid} 1")
    _write("/proc/self/gid_map", f"0 {gid} 1")
    sys_calls.unshare(CLONE_NEWPID, "PID namespace")


def _confine(sys_calls: _Sys, hidden, connection: Path | None, cwd: Path,
             scratch: Path) -> tuple:
    """In the child (PID 1 of the new PID namespace): a mount namespace of its own, and the
    mounts, limits and capabilities of the module docstring; ``scratch`` (an empty folder)
    becomes the kernel's writable tmpfs. Returns the kernel's connection file inside the
    sandbox and its environment."""
    sys_calls.unshare(CLONE_NEWNS, "mount namespace")
    sys_calls.mount(None, "/", None, MS_REC | MS_PRIVATE, what="making mounts private")
    connection_text = connection.read_bytes() if connection else b""
    matplotlib_cache = Path.home() / ".cache" / "matplotlib"
    font_caches = sorted(matplotlib_cache.glob("fontlist-*.json")) if matplotlib_cache.is_dir() else []
    font_texts = {path.name: path.read_bytes() for path in font_caches}
    sys_calls.read_only_tree("/")
    # The only writable place: a fresh tmpfs on the scratch folder.
    sys_calls.mount("tmpfs", str(scratch), "tmpfs", MS_NOSUID | MS_NODEV,
                    f"size={TMPFS_SIZE},mode=1777", what="the kernel's scratch tmpfs")
    home = scratch / "home"
    for sub in ("", ".ipython", ".matplotlib", "runtime", "jupyter"):
        (home / sub).mkdir(parents=True, exist_ok=True)
    for name, data in font_texts.items():  # matplotlib would rebuild its font cache (slow)
        (home / ".matplotlib" / name).write_bytes(data)
    inner = home / "runtime" / (connection.name if connection else "none")
    if connection:
        inner.write_bytes(connection_text)
    if Path("/dev/shm").is_dir():
        sys_calls.mount("tmpfs", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, "size=64m,mode=1777",
                        what="the kernel's /dev/shm")
    cover = _empty_file(sys_calls, scratch / ".cover")
    for path in sorted({Path(p).resolve() for p in hidden}, key=lambda p: len(p.parts)):
        if path == cwd or path in cwd.parents:
            _hide_except(sys_calls, path, cwd, scratch / ".keep")
        else:
            _hide(sys_calls, path, cover)
    sys_calls.mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV, what="a new /proc")
    _set_limits()
    sys_calls.drop_capabilities()
    os.chdir(cwd)
    return inner, _kernel_environment(home, scratch)


def _forward_signals(child: int) -> None:
    def forward(signum, _frame):
        try:
            os.kill(child, signum)
        except ProcessLookupError:
            pass

    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT,
                   signal.SIGUSR1, signal.SIGUSR2):
        signal.signal(signum, forward)


def run(command: list, hidden, kernel: bool = True) -> int:
    """Run ``command`` in the sandbox and return its exit status: a kernel command line with
    ``-f CONNECTION_FILE`` (the file is copied into the sandbox), or with ``kernel=False`` any
    command (gdgrade.verify's answer process; its standard streams are inherited). Raises
    ``SandboxError`` when the sandbox cannot be set up."""
    if sys.platform != "linux":
        raise SandboxError(f"the grading sandbox needs Linux namespaces (this is {sys.platform})")
    if not command:
        raise SandboxError("no command to run")
    flag, connection = None, None
    if kernel:
        try:
            flag = command.index("-f")
        except ValueError:
            raise SandboxError(f"no '-f CONNECTION_FILE' in the kernel command {command}") from None
        connection = Path(command[flag + 1]).resolve()
    cwd = Path.cwd().resolve()
    sys_calls = _Sys()
    scratch = Path(tempfile.mkdtemp(prefix="gdgrade-sandbox-"))
    try:
        return _run_confined(sys_calls, command, flag, hidden, connection, cwd, scratch)
    finally:
        scratch.rmdir()


def _run_confined(sys_calls, command, flag, hidden, connection, cwd, scratch) -> int:
    _prepare_namespaces(sys_calls)
    read_end, write_end = os.pipe()
    child = os.fork()  # PID 1 of the new PID namespace
    if child == 0:
        os.close(read_end)
        try:
            inner, env = _confine(sys_calls, hidden, connection, cwd, scratch)
        except (SandboxError, OSError) as error:  # report to the parent, never start the kernel
            os.write(write_end, f"{error}".encode()[:4000] or b"sandbox set-up failed")
            os._exit(70)
        os.close(write_end)
        kernel = os.fork()  # the kernel, so that PID 1 (this process) reaps and forwards
        if kernel == 0:
            argv = command if flag is None else [*command[:flag + 1], str(inner),
                                                 *command[flag + 2:]]
            os.execvpe(argv[0], argv, env)
        _forward_signals(kernel)
        while True:
            pid, status = os.wait()
            if pid == kernel:
                os._exit(os.waitstatus_to_exitcode(status) & 0xFF)
    os.close(write_end)
    _forward_signals(child)
    report = b""
    while chunk := os.read(read_end, 4096):
        report += chunk
    os.close(read_end)
    _, status = os.waitpid(child, 0)
    if report:
        raise SandboxError(report.decode(errors="replace"))
    return os.waitstatus_to_exitcode(status)


def main(argv=None) -> int:
    """``python -m gdgrade.sandbox [--hide PATH ...] [--command] -- COMMAND``: a kernel command
    (with ``-f CONNECTION_FILE``), or with ``--command`` any command."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--" not in argv:
        print("usage: python -m gdgrade.sandbox [--hide PATH ...] -- KERNEL COMMAND",
              file=sys.stderr)
        return 2
    split = argv.index("--")
    options, command = argv[:split], argv[split + 1:]
    hidden = [options[i + 1] for i, word in enumerate(options[:-1]) if word == "--hide"]
    try:
        return run(command, hidden, kernel="--command" not in options)
    except SandboxError as error:
        print(f"gdgrade sandbox: cannot start the kernel: {error}.\n"
              f"Grading without the sandbox lets one submission change the grades of others; "
              f"to accept that anyway (trusted notebooks only), set {SANDBOX_VARIABLE}=off.",
              file=sys.stderr)
        return 70


def __getattr__(name):
    # The kernel manager lives in gdgrade.sandbox_kernel, so that the launcher (python -m
    # gdgrade.sandbox, started for every kernel and every answer process) does not import
    # jupyter_client: 0.15 s of every submission's grading.
    if name == "SandboxedKernelManager":
        from gdgrade.sandbox_kernel import SandboxedKernelManager

        return SandboxedKernelManager
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def course_hidden_paths(root, source="solutions") -> list:
    """What a submission's kernel must not see in the course at ``root``: the sources (with the
    hidden tests), the gradebook, every student's folders, downloads, git history, and
    Jupyter's runtime directory."""
    from jupyter_core.paths import jupyter_runtime_dir

    names = (source, "gradebook.db", "submitted", "autograded", "feedback", "downloaded",
             ".git", "grades.csv", ".jupyter_cache", "_build")
    # The course, and the repository gdgrade is installed from (an editable install: the
    # kernel imports gdlib from there, so the repository stays visible but for these).
    course = Path(root).resolve()
    repository = Path(__file__).resolve().parent.parent
    hidden = [course / name for name in names]
    if repository != course:
        hidden += [repository / name for name in names if (repository / name).exists()]
    return [str(path) for path in hidden] + [jupyter_runtime_dir()]


if __name__ == "__main__":
    sys.exit(main())


// The python3 helper the load generator runs: fd holders (forked `sleep`s) and devpts namespaces, driven by JSON lines.
//
// Kept as a string, so the compiled bench and the TypeScript tests write the same file without looking for it.
// Why python: fork+exec of `sleep` with inherited fds costs ~1 MB per holder, where a node child costs ~40 MB.
// Every process it starts dies with its parent (PR_SET_PDEATHSIG), so a killed bench leaves nothing behind.
//
// Modes (argv[1]):
//   spawner FDS SECONDS   children are `sleep SECONDS` holding FDS fds each (0-2 on /dev/null, the rest a mix
//                         of /dev/null, pipes, regular files in WORKDIR=argv[4] and unix sockets)
//   ns SECONDS            run as pid 1 of a new PID + mount namespace: mounts a new devpts instance on /dev/pts
//                         and opens ptys there; each pty's slave is held by a `sleep` child as its controlling tty
// Both answer {"op":"blip","seconds":S}: a child that runs `sleep S` and ends (churn), reaped by a later request or at exit.
// Requests are one JSON object per line on stdin; each gets one JSON line on stdout.
// "pid" values are as seen through the /proc this process sees (the scanner's view).
export const AGENT_PY = String.raw`
import ctypes, fcntl, json, os, signal, socket, struct, sys

libc = ctypes.CDLL(None, use_errno=True)
PR_SET_PDEATHSIG = 1
TIOCSPTLCK = 0x40045431
TIOCGPTN = 0x80045430
PIPE_FLOOR = 4000

def die_with_parent(parent):
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:
        os._exit(1)

def view_pid():
    return int(os.readlink("/proc/self"))

def reply(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()

def reap(pid):
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass

def spawn_sleep(seconds, setup):
    """Fork a child that runs setup() then execs sleep; returns (local pid, view pid)."""
    # Above every fd number setup() may dup2 onto; close-on-exec, so EOF tells the parent exec happened.
    r, w = (high(fd, PIPE_FLOOR) for fd in os.pipe())
    me = os.getpid()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r)
            die_with_parent(me)
            setup()
            os.write(w, str(view_pid()).encode())
            os.execv("/bin/sleep", ["sleep", str(seconds)])
        finally:
            os._exit(127)
    os.close(w)
    data = b""
    while True:
        chunk = os.read(r, 64)
        if not chunk:
            break
        data += chunk
    os.close(r)
    if not data:
        os.waitpid(pid, 0)
        raise RuntimeError("child failed before exec")
    return pid, int(data)

def blip(blips, seconds, setup):
    """A short-lived process (churn): reaps the blips that ended, then starts one more; its view pid."""
    for local in list(blips):
        done, _ = os.waitpid(local, os.WNOHANG)
        if done != 0:
            blips.remove(local)
    local, view = spawn_sleep(seconds, setup)
    blips.append(local)
    return view

def high(fd, floor):
    """Move fd to >= floor, close-on-exec, so children pick what they inherit."""
    moved = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, floor)
    os.close(fd)
    return moved

def spawner(nfds, seconds, workdir):
    die_with_parent(os.getppid())
    floor = max(64, nfds + 16)
    devnull = high(os.open("/dev/null", os.O_RDWR), floor)
    template = []
    i = 0
    while len(template) < nfds - 3:
        kind = i % 4
        if kind == 0:
            template.append(high(os.open("/dev/null", os.O_RDONLY), floor))
        elif kind == 1:
            for fd in os.pipe():
                template.append(high(fd, floor))
        elif kind == 2:
            path = os.path.join(workdir, "f%d" % i)
            template.append(high(os.open(path, os.O_RDWR | os.O_CREAT, 0o600), floor))
        else:
            a, b = socket.socketpair()
            template.append(high(a.detach(), floor))
            template.append(high(b.detach(), floor))
        i += 1
    template = template[: max(0, nfds - 3)]

    def setup():
        for target in (0, 1, 2):
            os.dup2(devnull, target)
        for index, fd in enumerate(template):
            os.dup2(fd, 3 + index)

    children = {}
    blips = []
    for line in sys.stdin:
        req = json.loads(line)
        op = req["op"]
        if op == "blip":
            reply({"pid": blip(blips, req["seconds"], setup)})
        elif op == "spawn":
            pids = []
            for _ in range(req["count"]):
                local, view = spawn_sleep(seconds, setup)
                children[view] = local
                pids.append(view)
            reply({"pids": pids})
        elif op == "kill":
            for view in req["pids"]:
                local = children.pop(view, None)
                if local is not None:
                    reap(local)
            reply({"ok": True})
        elif op == "exit":
            break
    for local in children.values():
        reap(local)
    for local in blips:
        reap(local)
    reply({"ok": True})

def ns_agent(seconds):
    die_with_parent(os.getppid())
    src = b"devpts"
    if libc.mount(src, b"/dev/pts", b"devpts", 0, b"newinstance,ptmxmode=0666,mode=620") != 0:
        err = ctypes.get_errno()
        reply({"error": "mount devpts: " + os.strerror(err)})
        return
    dev = os.stat("/dev/pts/ptmx").st_dev
    filler = os.open("/dev/null", os.O_RDONLY)
    ptys = []  # (index, master fd, child local pid, child view pid)
    adopted = None

    def open_pty(n):
        # Half the masters through /dev/ptmx (devtmpfs, resolved to the "pts" beside it), half through /dev/pts/ptmx.
        path = "/dev/ptmx" if n % 2 == 0 else "/dev/pts/ptmx"
        master = os.open(path, os.O_RDWR | os.O_NOCTTY)
        fcntl.ioctl(master, TIOCSPTLCK, struct.pack("i", 0))
        index = struct.unpack("i", fcntl.ioctl(master, TIOCGPTN, struct.pack("i", 0)))[0]
        def setup():
            os.setsid()
            slave = os.open("/dev/pts/%d" % index, os.O_RDWR)  # first tty opened by a session leader: controlling tty
            for target in (0, 1, 2):
                os.dup2(slave, target)
            if slave > 2:
                os.close(slave)
        local, view = spawn_sleep(seconds, setup)
        return (index, master, local, view)

    reply({"pid": view_pid(), "devptsDev": "%d:%d" % (os.major(dev), os.minor(dev))})
    blips = []
    for line in sys.stdin:
        req = json.loads(line)
        op = req["op"]
        if op == "blip":
            reply({"pid": blip(blips, req["seconds"], lambda: None)})
        elif op == "open":
            made = [open_pty(len(ptys) + k) for k in range(req["count"])]
            ptys.extend(made)
            reply({"ptys": [{"index": p[0], "slavePid": p[3]} for p in made]})
        elif op == "close":
            gone = ptys[len(ptys) - req["count"]:] if req["count"] > 0 else []
            del ptys[len(ptys) - len(gone):]
            for index, master, local, view in gone:
                reap(local)
                os.close(master)
            reply({"indexes": [p[0] for p in gone]})
        elif op == "adopt":
            # Hold a pty slave on the filler fd's number: the fd table changes, its size does not.
            slave = os.open("/dev/pts/%d" % req["index"], os.O_RDWR | os.O_NOCTTY)
            os.dup2(slave, filler)
            os.close(slave)
            adopted = req["index"]
            reply({"fd": filler})
        elif op == "release":
            null = os.open("/dev/null", os.O_RDONLY)
            os.dup2(null, filler)
            os.close(null)
            adopted = None
            reply({"fd": filler})
        elif op == "touch":
            # Sets a slave's times as input/output would (the kernel moves them only every 8 s).
            os.utime("/dev/pts/%d" % ptys[req["n"]][0], (req["atime"], req["mtime"]))
            reply({"ok": True})
        elif op == "exit":
            break
    for index, master, local, view in ptys:
        reap(local)
    for local in blips:
        reap(local)
    reply({"ok": True})

def hub():
    # pid 1 of an isolated PID namespace whose /proc the tests scan; it only waits for stdin to close.
    die_with_parent(os.getppid())
    reply({"pid": view_pid()})
    for line in sys.stdin:
        if json.loads(line)["op"] == "exit":
            break
    reply({"ok": True})

# Drop fds inherited from whoever started the bench, so every holder has exactly the fds asked for.
os.closerange(3, 65536)
mode = sys.argv[1]
if mode == "spawner":
    spawner(int(sys.argv[2]), int(sys.argv[3]), sys.argv[4])
elif mode == "ns":
    ns_agent(int(sys.argv[2]))
elif mode == "hub":
    hub()
else:
    raise SystemExit("unknown mode " + mode)
`;

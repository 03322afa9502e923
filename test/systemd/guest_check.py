#!/usr/bin/python3
"""In-guest half of the systemd test: runs as a oneshot under systemd (PID 1) in the test VM.

Creates the instances a, b and c with vtpmctl, drives vtpm@a/b/c.service with systemctl and checks
readiness (Type=notify), TPM service through the sockets, state across a restart, the sandbox
and that a stop stores the state. Prints "VTPM-SD:" lines and one "VTPM-SD-VERDICT:" line on the
serial console. Paths of the binaries under test come from /opt/vtpmtest/config.json.
"""

from __future__ import annotations

import array
import calendar
import datetime
import fcntl
import hashlib
import json
import os
import pwd
import socket
import stat
import struct
import subprocess
import sys
import time
from typing import Any, Callable

PAYLOAD = "/opt/vtpmtest"
CONFIG = json.load(open(os.path.join(PAYLOAD, "config.json"), encoding="utf-8"))
VTPMCTL: str = CONFIG["vtpmctl"]
VTPMD: str = CONFIG["vtpmd"]
STATE_ROOT = "/var/lib/vtpm"
RUN_ROOT = "/run/vtpm"

failures: list[str] = []


def say(text: str) -> None:
    print(f"VTPM-SD: [{uptime():>7}] {text}", flush=True)


def check(ok: bool, what: str) -> bool:
    say(("ok    " if ok else "FAIL  ") + what)
    if not ok:
        failures.append(what)
    return ok


def uptime() -> str:
    with open("/proc/uptime", encoding="ascii") as f:
        return f.read().split()[0]


def run(*cmd: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)


def show(unit: str, *props: str) -> dict[str, str]:
    """systemctl show; timestamps with microseconds (--timestamp=us+utc)."""
    out = run("systemctl", "show", "--timestamp=us+utc", "-p", ",".join(props), unit).stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def epoch_us(timestamp: str) -> int:
    """A timestamp as systemctl show --timestamp=us+utc prints it, in microseconds since the epoch."""
    parsed = datetime.datetime.strptime(timestamp.strip(), "%a %Y-%m-%d %H:%M:%S.%f UTC")
    return calendar.timegm(parsed.timetuple()) * 1_000_000 + parsed.microsecond


def proc_status(pid: int) -> dict[str, str]:
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        return {k: v.strip() for k, v in (line.split(":", 1) for line in f if ":" in line)}


def digest(path: str) -> tuple[int, str]:
    with open(path, "rb") as f:
        return os.stat(path).st_mtime_ns, hashlib.sha256(f.read()).hexdigest()


def wait_for(predicate: Callable[[], bool], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return predicate()


# --- a minimal client for vtpmd's control channel and a TPM 2.0 data channel ---------------------

CMD_INIT = 2
CMD_SET_DATAFD = 16
TPM_RS_PW = 0x40000009
NV_INDEX = 0x01500016
NV_DATA = b"vtpm-systemd-test:" + os.urandom(8).hex().encode()


def recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError(f"connection closed after {len(buf)} of {n} bytes")
        buf += chunk
    return buf


def password_session() -> bytes:
    """An authorization area with one empty-password session (TPM_RS_PW)."""
    session = struct.pack(">IHBH", TPM_RS_PW, 0, 0, 0)
    return struct.pack(">I", len(session)) + session


class Tpm:
    """Control connection to ctrl.sock plus a data channel handed over with CMD_SET_DATAFD."""

    def __init__(self, ctrl_path: str) -> None:
        self.ctrl = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.ctrl.settimeout(30)
        self.ctrl.connect(ctrl_path)
        self.data: socket.socket | None = None

    def control(self, code: int, payload: bytes = b"", fd: int | None = None) -> int:
        message = struct.pack(">I", code) + payload
        if fd is None:
            self.ctrl.sendall(message)
        else:
            rights = array.array("i", [fd])
            self.ctrl.sendmsg([message], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, rights)])
        return int(struct.unpack(">I", recv_exact(self.ctrl, 4))[0])

    def open_data(self) -> int:
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        mine.settimeout(30)
        try:
            result = self.control(CMD_SET_DATAFD, fd=theirs.fileno())
        finally:
            theirs.close()
        self.data = mine
        return result

    def command(self, tag: int, code: int, body: bytes) -> tuple[int, bytes]:
        assert self.data is not None
        self.data.sendall(struct.pack(">HII", tag, 10 + len(body), code) + body)
        header = recv_exact(self.data, 10)
        _tag, size, rc = struct.unpack(">HII", header)
        return rc, recv_exact(self.data, size - 10)

    def startup(self) -> int:
        return self.command(0x8001, 0x144, struct.pack(">H", 0x0000))[0]  # TPM2_Startup(CLEAR)

    def get_random(self, n: int) -> tuple[int, bytes]:
        rc, rest = self.command(0x8001, 0x17B, struct.pack(">H", n))
        return rc, rest[2:] if rc == 0 else b""

    def nv_define(self, size: int) -> int:
        # ordinary index, readable/writable with its own (empty) auth, no dictionary-attack lockout
        attributes = 0x4 | 0x40000 | 0x2000000  # AUTHWRITE | AUTHREAD | NO_DA
        public = struct.pack(">IHIHH", NV_INDEX, 0x000B, attributes, 0, size)
        body = (struct.pack(">I", 0x40000001) + password_session()  # TPM_RH_OWNER
                + struct.pack(">H", 0) + struct.pack(">H", len(public)) + public)
        return self.command(0x8002, 0x12A, body)[0]

    def nv_write(self, data: bytes) -> int:
        body = (struct.pack(">II", NV_INDEX, NV_INDEX) + password_session()
                + struct.pack(">H", len(data)) + data + struct.pack(">H", 0))
        return self.command(0x8002, 0x137, body)[0]

    def nv_read(self, size: int) -> tuple[int, bytes]:
        body = (struct.pack(">II", NV_INDEX, NV_INDEX) + password_session()
                + struct.pack(">HH", size, 0))
        rc, rest = self.command(0x8002, 0x14E, body)
        if rc != 0:
            return rc, b""
        (length,) = struct.unpack(">H", rest[4:6])  # after the parameterSize field
        return rc, rest[6:6 + length]

    def close(self) -> None:
        if self.data is not None:
            self.data.close()
        self.ctrl.close()


def serve_tpm(name: str) -> Tpm | None:
    """CMD_INIT, CMD_SET_DATAFD, TPM2_Startup and TPM2_GetRandom through /run/vtpm/NAME/ctrl.sock."""
    try:
        tpm = Tpm(f"{RUN_ROOT}/{name}/ctrl.sock")
        check(tpm.control(CMD_INIT, struct.pack(">I", 0)) == 0, f"{name}: CMD_INIT succeeds")
        check(tpm.open_data() == 0, f"{name}: CMD_SET_DATAFD succeeds")
        check(tpm.startup() == 0, f"{name}: TPM2_Startup(CLEAR) succeeds")
        rc, rnd = tpm.get_random(16)
        check(rc == 0 and len(rnd) == 16, f"{name}: TPM2_GetRandom returns 16 bytes (rc=0x{rc:x})")
        return tpm
    except (OSError, ConnectionError, struct.error) as e:
        check(False, f"{name}: TPM conversation through ctrl.sock: {e}")
        return None


# --- the checks ---------------------------------------------------------------------------------

def start_units(names: list[str]) -> dict[str, int]:
    """systemctl start blocks until every job is done, i.e. until READY=1 under Type=notify."""
    units = [f"vtpm@{n}.service" for n in names]
    t0 = time.monotonic()
    result = run("systemctl", "start", *units)
    elapsed = time.monotonic() - t0
    # Looked at right away, before anything else: the sockets must be there already.
    present = {n: all(os.path.exists(p) and stat.S_ISSOCK(os.stat(p).st_mode)
                      for p in (f"{RUN_ROOT}/{n}/ctrl.sock", f"{RUN_ROOT}/{n}/status.sock")) for n in names}
    check(result.returncode == 0, f"systemctl start {' '.join(units)} returns 0 ({elapsed:.2f} s)"
          + (f": {result.stderr.strip()}" if result.returncode else ""))
    for n in names:
        check(present[n], f"{n}: ctrl.sock and status.sock exist as soon as systemctl start returns")
    return {n: check_ready(n) for n in names}


def check_ready(name: str) -> int:
    unit = f"vtpm@{name}.service"
    ctrl, status = f"{RUN_ROOT}/{name}/ctrl.sock", f"{RUN_ROOT}/{name}/status.sock"
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(10)
            s.connect(status)
            report = json.loads(s.makefile().readline())
        check(report.get("pid") is not None, f"{name}: status.sock answers ({report.get('program')} "
              f"pid {report.get('pid')}, tpm {report.get('tpm')})")
    except (OSError, ValueError) as e:
        check(False, f"{name}: status.sock answers: {e}")

    props = show(unit, "Type", "NotifyAccess", "ActiveState", "SubState", "Result", "MainPID",
                 "StatusText", "ExecMainPID", "User", "ExecMainStartTimestamp", "ActiveEnterTimestamp")
    say(f"{name}: " + " ".join(f"{k}={v}" for k, v in sorted(props.items()) if "Timestamp" not in k))
    check(props.get("Type") == "notify", f"{name}: Type=notify")
    check((props.get("ActiveState"), props.get("SubState"), props.get("Result"))
          == ("active", "running", "success"), f"{name}: active/running, Result=success")
    # STATUS= travels in the same datagram as READY=1, from vtpmd itself (NotifyAccess=main).
    check(props.get("StatusText", "").startswith("serving TPM"),
          f"{name}: StatusText from vtpmd's READY=1 message: {props.get('StatusText')!r}")
    main_pid = int(props.get("MainPID", "0"))
    check(main_pid > 0 and main_pid == int(props.get("ExecMainPID", "-1")),
          f"{name}: MainPID {main_pid} is the process ExecStart= started (vtpmctl exec'd in place)")

    # The sockets were bound before the unit became active (and after its process started).
    try:
        started = epoch_us(props.get("ExecMainStartTimestamp", ""))
        active = epoch_us(props.get("ActiveEnterTimestamp", ""))
        bound = min(os.stat(p).st_mtime_ns // 1000 for p in (ctrl, status))
        say(f"{name}: exec +0 ms, sockets bound +{(bound - started) / 1000:.1f} ms, "
            f"active +{(active - started) / 1000:.1f} ms")
        # file times use the coarse clock (one tick late at most 10 ms)
        check(started - 10_000 <= bound <= active,
              f"{name}: sockets were created after the process started and before the unit went active")
    except (OSError, ValueError) as e:
        check(False, f"{name}: timestamps: {e}")
    return main_pid


def check_owned(name: str, path: str, mode: int) -> None:
    try:
        s = os.stat(path)
        check(s.st_uid == pwd.getpwnam("vtpm").pw_uid and stat.S_IMODE(s.st_mode) == mode,
              f"{name}: {path} owned by vtpm, mode {stat.S_IMODE(s.st_mode):04o} (want {mode:04o})")
    except OSError as e:
        check(False, f"{name}: {path}: {e}")


def check_sandbox(name: str, pid: int) -> None:
    vtpm = pwd.getpwnam("vtpm")
    st = proc_status(pid)
    say(f"{name}: /proc/{pid}/status " + " ".join(f"{k}={st.get(k)}" for k in
        ("Name", "Uid", "Gid", "Groups", "NoNewPrivs", "Seccomp", "CapEff", "CapPrm", "CapBnd", "CapAmb")))
    check(st.get("Uid", "").split() == [str(vtpm.pw_uid)] * 4, f"{name}: runs as uid {vtpm.pw_uid} (vtpm)")
    check(st.get("Gid", "").split() == [str(vtpm.pw_gid)] * 4, f"{name}: runs as gid {vtpm.pw_gid} (vtpm)")
    check(st.get("NoNewPrivs") == "1", f"{name}: NoNewPrivs: 1")
    check(st.get("Seccomp") == "2", f"{name}: Seccomp: 2 (filter)")
    check(all(int(st.get(k, "1"), 16) == 0 for k in ("CapEff", "CapPrm", "CapBnd", "CapAmb")),
          f"{name}: no capabilities (effective, permitted, bounding, ambient)")
    user = run("ps", "-o", "user=", "-p", str(pid)).stdout.strip()
    check(user == "vtpm", f"{name}: ps -o user shows {user!r}")
    exe = os.readlink(f"/proc/{pid}/exe")
    check(os.path.realpath(exe) == os.path.realpath(VTPMD), f"{name}: main process is vtpmd ({exe})")
    for ns in ("net", "mnt", "ipc", "uts", "user"):
        check(os.readlink(f"/proc/{pid}/ns/{ns}") != os.readlink(f"/proc/1/ns/{ns}"),
              f"{name}: own {ns} namespace")
    mounts = {}
    with open(f"/proc/{pid}/mountinfo", encoding="utf-8") as f:
        for line in f:
            fields = line.split()
            mounts[fields[4]] = fields[5].split(",")
    check("ro" in mounts.get("/", []) and "ro" in mounts.get("/usr", mounts.get("/", [])),
          f"{name}: / is read-only inside the sandbox (ProtectSystem=strict)")
    check("rw" in mounts.get(f"{STATE_ROOT}/{name}", []) and "rw" in mounts.get(f"{RUN_ROOT}/{name}", []),
          f"{name}: only its state and runtime directories are writable")
    for path, mode in ((f"{STATE_ROOT}/{name}", 0o700), (f"{RUN_ROOT}/{name}", 0o700),
                       (f"{RUN_ROOT}/{name}/ctrl.sock", 0o600)):
        check_owned(name, path, mode)


def list_instances() -> Any:
    text = run(VTPMCTL, "list")
    say("vtpmctl list:\n" + text.stdout.rstrip() + (("\n" + text.stderr.rstrip()) if text.stderr else ""))
    check(text.returncode == 0, f"vtpmctl list exits 0 (got {text.returncode})")
    js = run(VTPMCTL, "list", "--json")
    check(js.returncode == 0, f"vtpmctl list --json exits 0 (got {js.returncode})")
    try:
        return json.loads(js.stdout)
    except ValueError as e:
        check(False, f"vtpmctl list --json is JSON: {e}: {js.stdout[:200]!r}")
        return None


def find_entry(doc: Any, name: str) -> dict[str, Any] | None:
    if isinstance(doc, dict):
        if doc.get("name") == name:
            return doc
        doc = list(doc.values())
    if isinstance(doc, list):
        for item in doc:
            found = find_entry(item, name)
            if found is not None:
                return found
    return None


def entry_state(entry: dict[str, Any] | None) -> str:
    if entry is None:
        return "<missing>"
    return str(entry.get("state", entry.get("status", "<no state field>"))).lower()


def diagnostics() -> None:
    for name in ("a", "b", "c"):
        unit = f"vtpm@{name}.service"
        say(f"--- systemctl status {unit}")
        print(run("systemctl", "status", "--no-pager", "-l", unit).stdout, flush=True)
        say(f"--- journalctl -u {unit}")
        print(run("journalctl", "-b", "--no-pager", "-o", "short-monotonic", "-u", unit).stdout, flush=True)
        log = f"{STATE_ROOT}/{name}/vtpmd.log"
        if os.path.exists(log):
            say(f"--- {log} (tail)")
            with open(log, encoding="utf-8", errors="replace") as f:
                print("".join(f.readlines()[-30:]), flush=True)
    say("--- ls -la /var/lib/vtpm /run/vtpm")
    print(run("ls", "-laR", STATE_ROOT, RUN_ROOT).stdout, flush=True)


def main() -> int:
    say(f"checks start; vtpmctl={VTPMCTL} vtpmd={VTPMD}")
    if CONFIG.get("bootTimeline"):
        boot = run("journalctl", "-b", "--no-pager", "-o", "short-monotonic", "_PID=1").stdout
        print("\n".join(line for line in boot.splitlines()
                        if any(w in line for w in ("Starting", "Finished", "Started", "Reached", "running in"))),
              flush=True)
    try:
        vtpm = pwd.getpwnam("vtpm")
        check(True, f"sysusers.d created the system user vtpm (uid {vtpm.pw_uid})")
    except KeyError:
        check(False, "sysusers.d created the system user vtpm")
        return 1
    s = os.stat(STATE_ROOT) if os.path.isdir(STATE_ROOT) else None
    check(s is not None and s.st_uid == 0 and s.st_gid == vtpm.pw_gid and stat.S_IMODE(s.st_mode) == 0o750,
          "tmpfiles.d created /var/lib/vtpm (root:vtpm 0750)")

    for name in ("a", "b", "c"):
        r = run(VTPMCTL, "create", name)
        check(r.returncode == 0, f"vtpmctl create {name} exits 0" + (f": {r.stderr.strip()}" if r.returncode else ""))

    r = run("systemctl", "start", "vtpm@nosuch.service")
    check(r.returncode != 0 and not os.path.exists(f"{STATE_ROOT}/nosuch"),
          f"an instance never created does not start and gets no state directory (rc={r.returncode})")

    # Readiness gate, negative side: a vtpmd that cannot start (its state directory is locked by
    # another process) fails before READY=1, so the unit never becomes active; Restart=on-failure
    # brings it up once the lock is gone.
    os.makedirs(f"{STATE_ROOT}/c/tpm", exist_ok=True)
    lock_fd = os.open(f"{STATE_ROOT}/c/tpm/.lock", os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.lockf(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    run("systemctl", "start", "--no-block", "vtpm@c.service")
    seen: set[str] = set()

    def failed_once() -> bool:
        p = show("vtpm@c.service", "ActiveState", "SubState", "NRestarts")
        seen.add(f"{p.get('ActiveState')}/{p.get('SubState')}")
        return int(p.get("NRestarts", "0")) >= 1

    wait_for(failed_once, 30)
    props = show("vtpm@c.service", "ActiveState", "SubState", "Result", "NRestarts", "ExecMainStatus")
    check(int(props.get("NRestarts", "0")) >= 1 and not any(x.startswith("active/") for x in seen),
          f"c: with its state locked vtpmd exits before READY=1 and the unit never becomes active "
          f"(states seen {sorted(seen)}, {props})")
    check(not os.path.exists(f"{RUN_ROOT}/c/ctrl.sock"), "c: no ctrl.sock while it cannot start")
    os.close(lock_fd)
    came_up = wait_for(lambda: show("vtpm@c.service", "ActiveState").get("ActiveState") == "active", 30)
    props = show("vtpm@c.service", "ActiveState", "SubState", "Result", "NRestarts")
    check(came_up and int(props.get("NRestarts", "0")) >= 1,
          f"c: Restart=on-failure starts it once the lock is released ({props})")
    run("systemctl", "stop", "vtpm@c.service")

    pids = start_units(["a", "b"])
    for name in ("a", "b"):
        if pids[name] > 0:
            check_sandbox(name, pids[name])

    # swtpm's own tool against the control socket, then a TPM conversation on each instance.
    r = run("swtpm_ioctl", "--unix", f"{RUN_ROOT}/a/ctrl.sock", "-c")
    check(r.returncode == 0 and "capability" in r.stdout.lower(),
          f"a: swtpm_ioctl -c: {r.stdout.strip() or r.stderr.strip()}")
    tpm_a = serve_tpm("a")
    tpm_b = serve_tpm("b")
    for name in ("a", "b"):
        check_owned(name, f"{STATE_ROOT}/{name}/tpm/tpm2-00.permall", 0o600)

    # An NV index written before the restart must be readable after it.
    if tpm_a is not None:
        check(tpm_a.nv_define(len(NV_DATA)) == 0, "a: TPM2_NV_DefineSpace succeeds")
        check(tpm_a.nv_write(NV_DATA) == 0, "a: TPM2_NV_Write succeeds")
        tpm_a.close()

    doc = list_instances()
    for name in ("a", "b"):
        entry = find_entry(doc, name)
        check(entry_state(entry) == "running", f"vtpmctl list --json: {name} is running ({entry})")
        check(entry is not None and pids[name] in [v for v in entry.values() if isinstance(v, int)],
              f"vtpmctl list --json: {name} shows MainPID {pids[name]}")

    old_pid = pids["a"]
    r = run("systemctl", "restart", "vtpm@a.service")
    props = show("vtpm@a.service", "ActiveState", "MainPID", "Result")
    check(r.returncode == 0 and props.get("ActiveState") == "active"
          and int(props.get("MainPID", "0")) not in (0, old_pid),
          f"a: systemctl restart gives a new active daemon ({old_pid} -> {props.get('MainPID')})")
    try:
        tpm = Tpm(f"{RUN_ROOT}/a/ctrl.sock")
        check(tpm.control(CMD_INIT, struct.pack(">I", 0)) == 0 and tpm.open_data() == 0
              and tpm.startup() == 0, "a: after the restart CMD_INIT, CMD_SET_DATAFD and TPM2_Startup succeed")
        rc, data = tpm.nv_read(len(NV_DATA))
        check(rc == 0 and data == NV_DATA, f"a: the NV index written before the restart reads back "
              f"unchanged (rc=0x{rc:x}, {data!r})")
        tpm.close()
    except (OSError, ConnectionError, struct.error) as e:
        check(False, f"a: TPM conversation after restart: {e}")

    # systemctl stop must store the state: vtpmd's SIGTERM handler sends TPM2_Shutdown for a TPM
    # that was started (b got TPM2_Startup above and no shutdown from us) and writes the files.
    permall = f"{STATE_ROOT}/b/tpm/tpm2-00.permall"
    before = digest(permall)
    r = run("systemctl", "stop", "vtpm@b.service")
    props = show("vtpm@b.service", "ActiveState", "Result", "ExecMainStatus", "ExecMainCode")
    check(r.returncode == 0 and props.get("ActiveState") == "inactive" and props.get("Result") == "success"
          and props.get("ExecMainStatus") == "0",
          f"b: systemctl stop ends in inactive/success, vtpmd exit status 0 ({props})")
    after = digest(permall)
    check(after[0] != before[0] and after[1] != before[1],
          f"b: stop stored the state: tpm2-00.permall mtime and contents changed "
          f"({before[1][:12]} -> {after[1][:12]})")
    check(not os.path.exists(f"{RUN_ROOT}/b"), "b: runtime directory removed after stop")
    if tpm_b is not None:
        tpm_b.close()

    doc = list_instances()
    check(entry_state(find_entry(doc, "a")) == "running" and entry_state(find_entry(doc, "b")) != "running",
          f"vtpmctl list --json after stopping b: a running, b {entry_state(find_entry(doc, 'b'))}")

    # On a systemd host vtpmctl start/stop go through systemctl (the unit's sandbox applies).
    t0 = time.monotonic()
    r = run(VTPMCTL, "stop", "a")
    took = time.monotonic() - t0
    props = show("vtpm@a.service", "ActiveState", "Result")
    check(r.returncode == 0 and props.get("ActiveState") == "inactive" and props.get("Result") == "success",
          f"vtpmctl stop a stops vtpm@a.service in {took:.2f} s (rc={r.returncode}, {props}) "
          f"{r.stdout.strip()} {r.stderr.strip()}")
    t0 = time.monotonic()
    r = run(VTPMCTL, "start", "a")
    took = time.monotonic() - t0
    props = show("vtpm@a.service", "ActiveState", "MainPID")
    check(r.returncode == 0 and props.get("ActiveState") == "active"
          and os.path.exists(f"{RUN_ROOT}/a/ctrl.sock"),
          f"vtpmctl start a starts vtpm@a.service in {took:.2f} s (rc={r.returncode}, {props}) {r.stderr.strip()}")
    say("vtpmctl start a printed: " + " ".join(r.stdout.split()))

    say("checks end")
    return 1 if failures else 0


if __name__ == "__main__":
    try:
        rc = main()
    except Exception as e:  # noqa: BLE001 - any crash is a test failure with a message
        check(False, f"guest check crashed: {type(e).__name__}: {e}")
        rc = 1
    if rc:
        diagnostics()
        say("failed checks: " + "; ".join(failures))
    print(f"VTPM-SD-VERDICT: {'PASS' if rc == 0 else 'FAIL'}", flush=True)
    sys.exit(0)

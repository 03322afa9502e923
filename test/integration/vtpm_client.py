"""Client helpers for the vtpmd integration tests.

Starts the daemon under test (env VTPMD) in a private temporary directory and
talks to it over the control channel (protocol.md §3) and the data channel
(§2.3).  Python 3.11 standard library only.

Environment:
  VTPMD              path of the daemon binary (default build/daemon/vtpmd)
  VTPMD_REFERENCE    "swtpm" when VTPMD is Debian's swtpm 0.7.1; flips the few
                     expectations where vtpmd deliberately differs.
"""

from __future__ import annotations

import array
import os
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.normpath(os.path.join(HERE, '..', '..'))

VTPMD = os.environ.get('VTPMD') or os.path.join(REPO, 'build', 'daemon', 'vtpmd')
REFERENCE = os.environ.get('VTPMD_REFERENCE', '') == 'swtpm'

START_TIMEOUT = 5.0     # seconds to wait for a daemon's sockets
IO_TIMEOUT = 5.0        # default socket timeout for replies
CTRL_DEADLINE = 0.5     # control-channel incomplete-message deadline (§2.4)

# ---------------------------------------------------------------------------
# Control channel constants (protocol.md §3.1, §4)
# ---------------------------------------------------------------------------

CMD_GET_CAPABILITY = 0x01
CMD_INIT = 0x02
CMD_SHUTDOWN = 0x03
CMD_GET_TPMESTABLISHED = 0x04
CMD_SET_LOCALITY = 0x05
CMD_HASH_START = 0x06
CMD_HASH_DATA = 0x07
CMD_HASH_END = 0x08
CMD_CANCEL_TPM_CMD = 0x09
CMD_STORE_VOLATILE = 0x0a
CMD_RESET_TPMESTABLISHED = 0x0b
CMD_GET_STATEBLOB = 0x0c
CMD_SET_STATEBLOB = 0x0d
CMD_STOP = 0x0e
CMD_GET_CONFIG = 0x0f
CMD_SET_DATAFD = 0x10
CMD_SET_BUFFERSIZE = 0x11
CMD_GET_INFO = 0x12
CMD_LOCK_STORAGE = 0x13

CMD_NAMES = {v: k for k, v in dict(globals()).items() if k.startswith('CMD_')}

TPM_SUCCESS = 0x00
TPM_BAD_PARAMETER = 0x03
TPM_FAIL = 0x09
TPM_BAD_ORDINAL = 0x0a
TPM_IOERROR = 0x1f
TPM_BAD_LOCALITY = 0x3d
TPM_RETRY = 0x800

PTM_INIT_FLAG_DELETE_VOLATILE = 0x1
PTM_STATE_FLAG_DECRYPTED = 0x1
PTM_STATE_FLAG_ENCRYPTED = 0x2

BLOB_PERMANENT = 1
BLOB_VOLATILE = 2
BLOB_SAVESTATE = 3

INFO_TPMSPECIFICATION = 0x1
INFO_TPMATTRIBUTES = 0x2
INFO_TPMFEATURES = 0x4

# Capability masks (§3.2): vtpmd follows swtpm HEAD (LOCK_STORAGE bit 16).
CAPS_TPM2 = 0x0000FFFF if REFERENCE else 0x0001FFFF
CAPS_TPM12 = 0x00007FFF if REFERENCE else 0x00017FFF

# ---------------------------------------------------------------------------
# Data channel constants
# ---------------------------------------------------------------------------

TPM2_ST_NO_SESSIONS = 0x8001
TPM2_ST_SESSIONS = 0x8002
TPM12_TAG_RQU_COMMAND = 0x00C1
TPM12_TAG_RSP_COMMAND = 0x00C4

TPM2_RC_SUCCESS = 0x000
TPM2_RC_INITIALIZE = 0x100
TPM2_RC_FAILURE = 0x101
TPM2_RC_LOCALITY = 0x107
TPM2_RC_COMMAND_SIZE = 0x142
TPM2_RC_INSUFFICIENT = 0x09a
TPM12_FAIL = 0x09
TPM12_BAD_PARAM_SIZE = 0x19
TPM12_BAD_LOCALITY = 0x3d

TPM2_FATAL_RESPONSE = bytes.fromhex('80010000000a00000101')
TPM12_FATAL_RESPONSE = bytes.fromhex('00c40000000a00000009')

TPM2_CC_NV_DEFINESPACE = 0x12a
TPM2_CC_NV_WRITE = 0x137
TPM2_CC_STARTUP = 0x144
TPM2_CC_SHUTDOWN = 0x145
TPM2_CC_NV_READ = 0x14e
TPM2_CC_GETCAPABILITY = 0x17a
TPM2_CC_GETRANDOM = 0x17b
TPM2_CC_PCR_READ = 0x17e
TPM2_CC_READCLOCK = 0x181
TPM2_CC_PCR_EXTEND = 0x182

TPM_RH_OWNER = 0x40000001
TPM_RS_PW = 0x40000009
TPM_ALG_SHA1 = 0x0004
TPM_ALG_SHA256 = 0x000b
TPM_SU_CLEAR = 0x0000
TPM_SU_STATE = 0x0001
TPM_CAP_TPM_PROPERTIES = 6
TPM_PT_MAX_COMMAND_SIZE = 0x11e
TPM_PT_MAX_RESPONSE_SIZE = 0x11f

TPMA_NV_OWNERWRITE = 0x00000002
TPMA_NV_OWNERREAD = 0x00020000
TPMA_NV_NO_DA = 0x02000000

VENDOR_SET_LOCALITY = 0x20001000

TPM12_ORD_EXTEND = 0x14
TPM12_ORD_PCRREAD = 0x15
TPM12_ORD_STARTUP = 0x99
TPM12_ORD_GETTICKS = 0xf1
TPM12_ST_CLEAR = 1


def hx(data: bytes) -> str:
    """Hex with a space every byte, for readable assertion messages."""
    return data.hex(' ') if data else '<empty>'


# ---------------------------------------------------------------------------
# TPM command builders (pre-marshalled byte strings) and response parsers
# ---------------------------------------------------------------------------

def _tpm2_cmd(cc: int, body: bytes = b'', tag: int = TPM2_ST_NO_SESSIONS) -> bytes:
    return struct.pack('>HII', tag, 10 + len(body), cc) + body


def _pw_session(attributes: int = 0x01) -> bytes:
    """Authorization area with one empty-password session (TPM_RS_PW)."""
    sess = struct.pack('>IHBH', TPM_RS_PW, 0, attributes, 0)
    return struct.pack('>I', len(sess)) + sess


def tpm2_startup(su: int = TPM_SU_CLEAR) -> bytes:
    return _tpm2_cmd(TPM2_CC_STARTUP, struct.pack('>H', su))


def tpm2_shutdown(su: int = TPM_SU_CLEAR) -> bytes:
    return _tpm2_cmd(TPM2_CC_SHUTDOWN, struct.pack('>H', su))


def tpm2_getrandom(n: int) -> bytes:
    return _tpm2_cmd(TPM2_CC_GETRANDOM, struct.pack('>H', n))


def tpm2_readclock() -> bytes:
    return _tpm2_cmd(TPM2_CC_READCLOCK)


def tpm2_pcr_extend(pcr: int, digest: bytes) -> bytes:
    assert len(digest) == 32
    body = struct.pack('>I', pcr) + _pw_session()
    body += struct.pack('>IH', 1, TPM_ALG_SHA256) + digest
    return _tpm2_cmd(TPM2_CC_PCR_EXTEND, body, TPM2_ST_SESSIONS)


def tpm2_pcr_read(pcr: int) -> bytes:
    select_bits = bytearray(3)
    select_bits[pcr // 8] |= 1 << (pcr % 8)
    body = struct.pack('>IHB', 1, TPM_ALG_SHA256, 3) + bytes(select_bits)
    return _tpm2_cmd(TPM2_CC_PCR_READ, body)


def tpm2_getcap_property(prop: int) -> bytes:
    return _tpm2_cmd(TPM2_CC_GETCAPABILITY, struct.pack('>III', TPM_CAP_TPM_PROPERTIES, prop, 1))


def tpm2_nv_definespace(index: int, size: int) -> bytes:
    attrs = TPMA_NV_OWNERWRITE | TPMA_NV_OWNERREAD | TPMA_NV_NO_DA
    public = struct.pack('>IHIHH', index, TPM_ALG_SHA256, attrs, 0, size)
    body = struct.pack('>I', TPM_RH_OWNER) + _pw_session()
    body += struct.pack('>H', 0)                        # TPM2B_AUTH: empty
    body += struct.pack('>H', len(public)) + public     # TPM2B_NV_PUBLIC
    return _tpm2_cmd(TPM2_CC_NV_DEFINESPACE, body, TPM2_ST_SESSIONS)


def tpm2_nv_write(index: int, data: bytes, offset: int = 0) -> bytes:
    body = struct.pack('>II', TPM_RH_OWNER, index) + _pw_session()
    body += struct.pack('>H', len(data)) + data + struct.pack('>H', offset)
    return _tpm2_cmd(TPM2_CC_NV_WRITE, body, TPM2_ST_SESSIONS)


def tpm2_nv_read(index: int, size: int, offset: int = 0) -> bytes:
    body = struct.pack('>II', TPM_RH_OWNER, index) + _pw_session()
    body += struct.pack('>HH', size, offset)
    return _tpm2_cmd(TPM2_CC_NV_READ, body, TPM2_ST_SESSIONS)


def tpm2_vendor_set_locality(locality: int | None) -> bytes:
    body = b'' if locality is None else bytes([locality])
    return _tpm2_cmd(VENDOR_SET_LOCALITY, body)


def tpm12_cmd(ordinal: int, body: bytes = b'') -> bytes:
    return struct.pack('>HII', TPM12_TAG_RQU_COMMAND, 10 + len(body), ordinal) + body


def tpm12_startup(st: int = TPM12_ST_CLEAR) -> bytes:
    return tpm12_cmd(TPM12_ORD_STARTUP, struct.pack('>H', st))


def tpm12_getticks() -> bytes:
    return tpm12_cmd(TPM12_ORD_GETTICKS)


def tpm12_pcrread(pcr: int) -> bytes:
    return tpm12_cmd(TPM12_ORD_PCRREAD, struct.pack('>I', pcr))


def tpm12_extend(pcr: int, digest: bytes) -> bytes:
    assert len(digest) == 20
    return tpm12_cmd(TPM12_ORD_EXTEND, struct.pack('>I', pcr) + digest)


def rsp_header(rsp: bytes) -> tuple[int, int, int]:
    """(tag, size, rc) of a TPM response."""
    if len(rsp) < 10:
        raise AssertionError(f'TPM response shorter than 10 bytes: {hx(rsp)}')
    return struct.unpack('>HII', rsp[:10])


def rsp_rc(rsp: bytes) -> int:
    return rsp_header(rsp)[2]


def _tpm2_params(rsp: bytes, handles: int = 0) -> bytes:
    """Parameter area of a successful TPM 2 response (skips parameterSize)."""
    tag, _, _ = rsp_header(rsp)
    off = 10 + 4 * handles
    if tag == TPM2_ST_SESSIONS:
        (psize,) = struct.unpack_from('>I', rsp, off)
        return rsp[off + 4:off + 4 + psize]
    return rsp[off:]


def parse_getrandom(rsp: bytes) -> bytes:
    p = _tpm2_params(rsp)
    (n,) = struct.unpack_from('>H', p, 0)
    return p[2:2 + n]


def parse_pcr_read(rsp: bytes) -> bytes:
    """Digest of the (single) PCR selected in tpm2_pcr_read."""
    p = _tpm2_params(rsp)
    off = 4                                   # pcrUpdateCounter
    (count,) = struct.unpack_from('>I', p, off)
    off += 4
    for _ in range(count):
        off += 2
        off += 1 + p[off]
    (ndig,) = struct.unpack_from('>I', p, off)
    off += 4
    if ndig != 1:
        raise AssertionError(f'PCR_Read returned {ndig} digests: {hx(rsp)}')
    (dlen,) = struct.unpack_from('>H', p, off)
    return p[off + 2:off + 2 + dlen]


def parse_getcap_property(rsp: bytes) -> dict[int, int]:
    p = _tpm2_params(rsp)
    cap, count = struct.unpack_from('>II', p, 1)
    if cap != TPM_CAP_TPM_PROPERTIES:
        raise AssertionError(f'unexpected capability {cap:#x}: {hx(rsp)}')
    return {prop: val for prop, val in (struct.unpack_from('>II', p, 9 + 8 * i) for i in range(count))}


def parse_nv_read(rsp: bytes) -> bytes:
    p = _tpm2_params(rsp)
    (n,) = struct.unpack_from('>H', p, 0)
    return p[2:2 + n]


def parse_tpm12_digest(rsp: bytes) -> bytes:
    return rsp[10:30]


# ---------------------------------------------------------------------------
# Sockets
# ---------------------------------------------------------------------------

def free_tcp_port() -> int:
    """A currently free TCP port on 127.0.0.1 (bind to port 0, then release)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def unix_listening(path: str) -> bool:
    """True if a listening UNIX stream socket is bound to path (/proc/net/unix)."""
    try:
        with open('/proc/net/unix') as f:
            next(f)
            for line in f:
                fields = line.split()
                # Num RefCount Protocol Flags Type St Inode [Path]
                if len(fields) >= 8 and fields[7] == path and int(fields[3], 16) & 0x10000:
                    return True
    except OSError:
        pass
    return False


def tcp_listening(port: int) -> bool:
    """True if something listens on TCP port (any IPv4/IPv6 address)."""
    for name in ('/proc/net/tcp', '/proc/net/tcp6'):
        try:
            with open(name) as f:
                next(f)
                for line in f:
                    fields = line.split()
                    if fields[3] == '0A' and int(fields[1].rsplit(':', 1)[1], 16) == port:
                        return True
        except OSError:
            pass
    return False


def recv_exact(sock: socket.socket, n: int, timeout: float = IO_TIMEOUT) -> bytes:
    """Read exactly n bytes or raise AssertionError (timeout / EOF)."""
    buf = b''
    deadline = time.monotonic() + timeout
    while len(buf) < n:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f'timeout: wanted {n} bytes, got {len(buf)}: {hx(buf)}')
        sock.settimeout(left)
        try:
            chunk = sock.recv(n - len(buf))
        except socket.timeout:
            continue
        except ConnectionResetError:
            chunk = b''
        if not chunk:
            raise AssertionError(f'connection closed: wanted {n} bytes, got {len(buf)}: {hx(buf)}')
        buf += chunk
    return buf


def recv_pending(sock: socket.socket, wait: float = 0.15) -> bytes | None:
    """Whatever arrives within `wait` seconds; None if the peer closed."""
    buf = b''
    deadline = time.monotonic() + wait
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return buf
        r, _, _ = select.select([sock], [], [], left)
        if not r:
            return buf
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            chunk = b''
        if not chunk:
            return None if not buf else buf + b'<EOF>'
        buf += chunk


def wait_closed(sock: socket.socket, timeout: float) -> tuple[bool, bytes, float]:
    """Wait until the peer closes.  Returns (closed, bytes received, elapsed)."""
    t0 = time.monotonic()
    buf = b''
    while True:
        left = t0 + timeout - time.monotonic()
        if left <= 0:
            return False, buf, time.monotonic() - t0
        r, _, _ = select.select([sock], [], [], left)
        if not r:
            continue
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            chunk = b''
        if not chunk:
            return True, buf, time.monotonic() - t0
        buf += chunk


class Ctrl:
    """Control channel client: one request, one reply (strict lock-step)."""

    def __init__(self, sock: socket.socket):
        self.sock = sock

    @classmethod
    def unix(cls, path: str, timeout: float = IO_TIMEOUT) -> 'Ctrl':
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(timeout)
        s.connect(path)
        return cls(s)

    @classmethod
    def tcp(cls, port: int, timeout: float = IO_TIMEOUT) -> 'Ctrl':
        s = socket.create_connection(('127.0.0.1', port), timeout=timeout)
        return cls(s)

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> 'Ctrl':
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- raw helpers --------------------------------------------------------

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def recv(self, n: int, timeout: float = IO_TIMEOUT) -> bytes:
        return recv_exact(self.sock, n, timeout)

    def pending(self, wait: float = 0.15) -> bytes | None:
        return recv_pending(self.sock, wait)

    def request(self, code: int, payload: bytes = b'', ok_len: int = 4) -> tuple[int, bytes]:
        """Send code+payload in one write; read a 4-byte result and, if it is
        0, the rest of an ok_len-byte reply.  Returns (result, remaining)."""
        self.send(struct.pack('>I', code) + payload)
        (rc,) = struct.unpack('>I', self.recv(4))
        if rc != 0 or ok_len <= 4:
            return rc, b''
        return rc, self.recv(ok_len - 4)

    # -- one method per command (§3) -------------------------------------

    def get_capability(self) -> tuple[int, int]:
        rc, rest = self.request(CMD_GET_CAPABILITY, ok_len=8)
        return rc, (struct.unpack('>I', rest)[0] if rest else 0)

    def init(self, flags: int = 0) -> int:
        return self.request(CMD_INIT, struct.pack('>I', flags))[0]

    def shutdown(self) -> int:
        return self.request(CMD_SHUTDOWN)[0]

    def get_tpmestablished(self) -> tuple[int, int]:
        rc, rest = self.request(CMD_GET_TPMESTABLISHED, ok_len=8)
        return rc, (rest[0] if rest else -1)

    def set_locality(self, loc: int, size: int = 4) -> int:
        return self.request(CMD_SET_LOCALITY, bytes([loc]) + bytes(size - 1))[0]

    def hash_start(self) -> int:
        return self.request(CMD_HASH_START)[0]

    def hash_data(self, data: bytes) -> int:
        return self.request(CMD_HASH_DATA, struct.pack('>I', len(data)) + data)[0]

    def hash_end(self) -> int:
        return self.request(CMD_HASH_END)[0]

    def cancel(self) -> int:
        return self.request(CMD_CANCEL_TPM_CMD)[0]

    def store_volatile(self) -> int:
        return self.request(CMD_STORE_VOLATILE)[0]

    def reset_tpmestablished(self, loc: int, size: int = 4) -> int:
        return self.request(CMD_RESET_TPMESTABLISHED, bytes([loc]) + bytes(size - 1))[0]

    def get_stateblob(self, btype: int, flags: int = PTM_STATE_FLAG_DECRYPTED,
                      offset: int = 0, short_reply: bool = False):
        """Returns (result, state_flags, totlength, length, data).  The reply
        is the 16-byte header (plus data) unless short_reply is set, in which
        case a 4-byte rejection (gate / bad request) is expected."""
        self.send(struct.pack('>IIII', CMD_GET_STATEBLOB, flags, btype, offset))
        if short_reply:
            (rc,) = struct.unpack('>I', self.recv(4))
            return rc, 0, 0, 0, b''
        rc, sflags, tot, length = struct.unpack('>IIII', self.recv(16))
        data = self.recv(length) if rc == 0 and length else b''
        return rc, sflags, tot, length, data

    def set_stateblob(self, btype: int, blob: bytes, flags: int = 0,
                      split: bool = False) -> int:
        hdr = struct.pack('>IIII', CMD_SET_STATEBLOB, flags, btype, len(blob))
        if split:
            self.send(hdr)
            time.sleep(0.02)
            mid = len(blob) // 2
            self.send(blob[:mid])
            time.sleep(0.02)
            self.send(blob[mid:])
        else:
            self.send(hdr + blob)
        return struct.unpack('>I', self.recv(4))[0]

    def stop(self) -> int:
        return self.request(CMD_STOP)[0]

    def get_config(self) -> tuple[int, int]:
        rc, rest = self.request(CMD_GET_CONFIG, ok_len=8)
        return rc, (struct.unpack('>I', rest)[0] if rest else 0)

    def set_datafd(self, fd: int | None) -> int:
        msg = [struct.pack('>I', CMD_SET_DATAFD)]
        anc = []
        if fd is not None:
            anc = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array('i', [fd]).tobytes())]
        self.sock.sendmsg(msg, anc)
        return struct.unpack('>I', self.recv(4))[0]

    def set_buffersize(self, size: int) -> tuple[int, int, int, int]:
        rc, rest = self.request(CMD_SET_BUFFERSIZE, struct.pack('>I', size), ok_len=16)
        if rc:
            return rc, 0, 0, 0
        return (rc,) + struct.unpack('>III', rest)

    def get_info(self, flags: int, offset: int = 0) -> tuple[int, int, int, bytes]:
        """Returns (result, totlength, length, chunk)."""
        self.send(struct.pack('>IQII', CMD_GET_INFO, flags, offset, 0))
        (rc,) = struct.unpack('>I', self.recv(4))
        if rc:
            return rc, 0, 0, b''
        tot, length = struct.unpack('>II', self.recv(8))
        return rc, tot, length, self.recv(length)

    def get_info_string(self, flags: int) -> str:
        """Whole GET_INFO result, chunk by chunk, without the NUL."""
        out, offset = b'', 0
        while True:
            rc, tot, length, chunk = self.get_info(flags, offset)
            if rc:
                raise AssertionError(f'GET_INFO({flags}, offset {offset}) -> {rc:#x}')
            out += chunk
            offset += length
            if offset >= tot or length == 0:
                break
        if not out.endswith(b'\0'):
            raise AssertionError(f'GET_INFO string not NUL terminated: {out!r}')
        return out[:-1].decode()

    def lock_storage(self, retries: int) -> int:
        return self.request(CMD_LOCK_STORAGE, struct.pack('>I', retries))[0]


class Data:
    """Data channel client, framed by the response header's size field."""

    def __init__(self, sock: socket.socket):
        self.sock = sock

    @classmethod
    def tcp(cls, port: int, timeout: float = IO_TIMEOUT) -> 'Data':
        return cls(socket.create_connection(('127.0.0.1', port), timeout=timeout))

    @classmethod
    def unix(cls, path: str, timeout: float = IO_TIMEOUT) -> 'Data':
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(timeout)
        s.connect(path)
        return cls(s)

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> 'Data':
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def recv_response(self, timeout: float = IO_TIMEOUT) -> bytes:
        hdr = recv_exact(self.sock, 10, timeout)
        (size,) = struct.unpack_from('>I', hdr, 2)
        if size < 10 or size > 65536:
            raise AssertionError(f'bad response size field {size}: {hx(hdr)}')
        return hdr + recv_exact(self.sock, size - 10, timeout)

    def transact(self, cmd: bytes, timeout: float = IO_TIMEOUT) -> bytes:
        self.send(cmd)
        return self.recv_response(timeout)

    def pending(self, wait: float = 0.15) -> bytes | None:
        return recv_pending(self.sock, wait)


# ---------------------------------------------------------------------------
# Daemon process management
# ---------------------------------------------------------------------------

class DaemonError(AssertionError):
    pass


class Daemon:
    """One daemon process with its own temporary directory.

    data: 'tcp' | 'unix' | None (None = no --server; use CMD_SET_DATAFD)
    ctrl: 'unix' | 'tcp'
    """

    def __init__(self, *, tpm2: bool = True, data: str | None = 'tcp', ctrl: str = 'unix',
                 flags: str | None = None, terminate: bool = False,
                 ctrl_opts: str = '', server_opts: str = '', extra: tuple = (),
                 statedir: str | None = None, log_level: int | None = 20,
                 pid_file: bool = True, workdir: str | None = None):
        self.tpm2 = tpm2
        self.data_kind = data
        self.ctrl_kind = ctrl
        self.flags = flags
        self.terminate = terminate
        self.ctrl_opts = ctrl_opts
        self.server_opts = server_opts
        self.extra = list(extra)
        self.log_level = log_level
        self.use_pid = pid_file
        self.own_dir = workdir is None
        self.dir = workdir or tempfile.mkdtemp(prefix='vtpmd-it-')
        self.statedir = statedir or os.path.join(self.dir, 'state')
        os.makedirs(self.statedir, exist_ok=True)
        self.ctrl_path = os.path.join(self.dir, 'ctrl.sock')
        self.data_path = os.path.join(self.dir, 'data.sock')
        self.log_path = os.path.join(self.dir, 'daemon.log')
        self.pid_path = os.path.join(self.dir, 'daemon.pid')
        self.stdout_path = os.path.join(self.dir, 'stdout')
        self.stderr_path = os.path.join(self.dir, 'stderr')
        self.ctrl_port = 0
        self.data_port = 0
        self.proc: subprocess.Popen | None = None
        self.returncode: int | None = None

    # -- command line ------------------------------------------------------

    def argv(self) -> list[str]:
        a = [VTPMD, 'socket']
        if self.tpm2:
            a.append('--tpm2')
        if self.ctrl_kind == 'unix':
            c = f'type=unixio,path={self.ctrl_path}'
        else:
            c = f'type=tcp,port={self.ctrl_port}'
        a += ['--ctrl', c + self.ctrl_opts]
        if self.data_kind == 'tcp':
            a += ['--server', f'type=tcp,port={self.data_port}' + self.server_opts]
        elif self.data_kind == 'unix':
            a += ['--server', f'type=unixio,path={self.data_path}' + self.server_opts]
        a += ['--tpmstate', f'dir={self.statedir}']
        if self.flags:
            a += ['--flags', self.flags]
        if self.log_level is not None:
            a += ['--log', f'file={self.log_path},level={self.log_level}']
        if self.use_pid:
            a += ['--pid', f'file={self.pid_path}']
        if self.terminate:
            a.append('-t')
        return a + self.extra

    # -- life cycle ----------------------------------------------------------

    def spawn(self, argv: list[str] | None = None) -> subprocess.Popen:
        """Start the process (fresh TCP ports) without waiting for it."""
        if self.ctrl_kind == 'tcp':
            self.ctrl_port = free_tcp_port()
        if self.data_kind == 'tcp':
            self.data_port = free_tcp_port()
        with open(self.stdout_path, 'wb') as out, open(self.stderr_path, 'wb') as err:
            self.proc = subprocess.Popen(argv or self.argv(), stdin=subprocess.DEVNULL,
                                         stdout=out, stderr=err, close_fds=True)
        self.returncode = None
        return self.proc

    def start(self) -> 'Daemon':
        last = ''
        for _attempt in range(3):
            self.spawn()
            if self._wait_ready():
                return self
            last = self.diagnostics()
            if 'in use' not in last.lower():
                break
        raise DaemonError(f'daemon did not become ready: {" ".join(self.argv())}\n{last}')

    def _probe(self) -> bool:
        """Ready = every socket the daemon should create is listening.
        Checked through /proc so that no probe connection is made (a probe
        client would count as "the" client and could end a daemon started
        with -t or --ctrl ...,terminate)."""
        if self.ctrl_kind == 'unix' and not unix_listening(self.ctrl_path):
            return False
        if self.ctrl_kind == 'tcp' and not tcp_listening(self.ctrl_port):
            return False
        if self.data_kind == 'unix' and not unix_listening(self.data_path):
            return False
        if self.data_kind == 'tcp' and not tcp_listening(self.data_port):
            return False
        return True

    def _wait_ready(self) -> bool:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.returncode = self.proc.returncode
                return False
            if self._probe():
                return True
            time.sleep(0.01)
        return False

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait_exit(self, timeout: float = 5.0) -> int | None:
        """Exit code, or None if still running after timeout."""
        try:
            self.returncode = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None
        return self.returncode

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def kill(self) -> None:
        """Stop the process (SIGTERM, then SIGKILL) and reap it."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(3)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.returncode = self.proc.returncode

    def cleanup(self) -> None:
        self.kill()
        if self.own_dir:
            shutil.rmtree(self.dir, ignore_errors=True)

    # -- clients ---------------------------------------------------------------

    def ctrl(self, timeout: float = IO_TIMEOUT) -> Ctrl:
        if self.ctrl_kind == 'unix':
            return Ctrl.unix(self.ctrl_path, timeout)
        return Ctrl.tcp(self.ctrl_port, timeout)

    def data(self, timeout: float = IO_TIMEOUT) -> Data:
        if self.data_kind == 'tcp':
            return Data.tcp(self.data_port, timeout)
        if self.data_kind == 'unix':
            return Data.unix(self.data_path, timeout)
        raise ValueError('daemon has no --server; use CMD_SET_DATAFD')

    def state_file(self, name: str) -> str:
        prefix = 'tpm2' if self.tpm2 else 'tpm'
        return os.path.join(self.statedir, f'{prefix}-00.{name}')

    # -- diagnostics ---------------------------------------------------------

    def read_file(self, path: str) -> str:
        try:
            with open(path, 'rb') as f:
                return f.read().decode(errors='replace')
        except OSError:
            return ''

    def log_text(self) -> str:
        return self.read_file(self.log_path)

    def stderr_text(self) -> str:
        return self.read_file(self.stderr_path)

    def diagnostics(self, limit: int = 6000) -> str:
        rc = self.proc.poll() if self.proc else None
        parts = [f'--- daemon argv: {" ".join(self.argv())}', f'--- exit status: {rc}']
        for name, text in (('stderr', self.stderr_text()), ('stdout', self.read_file(self.stdout_path)),
                           ('log', self.log_text())):
            if text:
                parts.append(f'--- {name} (last {limit} chars):\n{text[-limit:]}')
        return '\n'.join(parts)


def run_tool(argv: list[str], timeout: float = 10.0, input: bytes | None = None) -> subprocess.CompletedProcess:
    """Run an external tool (swtpm_ioctl, swtpm_bios, the daemon with
    --print-*), capturing output."""
    return subprocess.run(argv, input=input, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          timeout=timeout, stdin=None if input is not None else subprocess.DEVNULL)


# ---------------------------------------------------------------------------
# unittest glue
# ---------------------------------------------------------------------------

class DaemonTestCase(unittest.TestCase):
    """Base class: start_daemon() registers teardown (always kills the
    process) and dumps the daemon's stderr/log when the test failed."""

    maxDiff = None

    def start_daemon(self, **kw) -> Daemon:
        d = Daemon(**kw)
        self.addCleanup(self._teardown_daemon, d)
        d.start()
        return d

    def make_daemon(self, **kw) -> Daemon:
        """Create (but do not start) a daemon whose teardown is registered."""
        d = Daemon(**kw)
        self.addCleanup(self._teardown_daemon, d)
        return d

    def _teardown_daemon(self, d: Daemon) -> None:
        d.kill()
        if self._has_failed():
            sys.stderr.write(f'\n===== diagnostics for {self.id()} =====\n{d.diagnostics()}\n')
        if d.own_dir:
            shutil.rmtree(d.dir, ignore_errors=True)

    def _has_failed(self) -> bool:
        """True if this test (or one of its subtests) has already recorded a
        failure/error (cleanups run after the test body)."""
        result = getattr(getattr(self, '_outcome', None), 'result', None)
        for test, _ in list(getattr(result, 'failures', [])) + list(getattr(result, 'errors', [])):
            if test is self or getattr(test, 'test_case', None) is self:
                return True
        return False

    def tempdir(self) -> str:
        path = tempfile.mkdtemp(prefix='vtpmd-it-')
        self.addCleanup(shutil.rmtree, path, True)
        return path

    # -- common assertions --------------------------------------------------

    def assertRc(self, got: int, want: int, what: str = '') -> None:
        if got != want:
            self.fail(f'{what}: expected result {want:#x}, got {got:#x}')

    def assertTpmOk(self, rsp: bytes, what: str = '') -> None:
        tag, size, rc = rsp_header(rsp)
        if rc != 0 or size != len(rsp):
            self.fail(f'{what}: TPM command failed: rc={rc:#x} size={size} len={len(rsp)} rsp={hx(rsp[:64])}')

    def assertBytes(self, got: bytes | None, want: bytes, what: str = '') -> None:
        if got != want:
            self.fail(f'{what}:\n  expected: {hx(want)}\n  got:      {hx(got) if got is not None else "<connection closed>"}')

    def assertNoMore(self, conn, what: str = '', wait: float = 0.1) -> None:
        extra = conn.pending(wait)
        if extra:
            self.fail(f'{what}: unexpected extra bytes after the reply: {hx(extra)}')


def started_tpm2(tc: DaemonTestCase, **kw) -> tuple[Daemon, Ctrl, Data]:
    """A TPM 2 daemon with a TCP data server, CMD_INIT done and
    TPM2_Startup(SU_CLEAR) sent."""
    d = tc.start_daemon(tpm2=True, **kw)
    c = d.ctrl()
    tc.addCleanup(c.close)
    tc.assertRc(c.init(), 0, 'CMD_INIT')
    data = d.data()
    tc.addCleanup(data.close)
    tc.assertTpmOk(data.transact(tpm2_startup()), 'TPM2_Startup')
    return d, c, data


def started_tpm12(tc: DaemonTestCase, **kw) -> tuple[Daemon, Ctrl, Data]:
    d = tc.start_daemon(tpm2=False, **kw)
    c = d.ctrl()
    tc.addCleanup(c.close)
    tc.assertRc(c.init(), 0, 'CMD_INIT')
    data = d.data()
    tc.addCleanup(data.close)
    tc.assertTpmOk(data.transact(tpm12_startup()), 'TPM_Startup')
    return d, c, data

#!/usr/bin/env python3
"""Writes the seed corpus for fuzz_blob into corpus/blob/: stored blobs and migration blobs
(protocol.md §7.4, §7.5) — plaintext, encrypted under the fuzz target's fixed keys, legacy v1,
and a few malformed ones.

Run from anywhere: python3 test/fuzz/make_blob_corpus.py. Needs the `openssl` command for AES
(hashlib/hmac do the rest), so it is independent of the C++ codec. IVs are fixed (derived from
the seed name) so reruns give the same files. The output is committed; rerun only when adding
seeds.
"""
import hashlib
import hmac
import pathlib
import struct
import subprocess

HERE = pathlib.Path(__file__).resolve().parent
OUT = HERE / "corpus" / "blob"

# Must match fuzz_blob.cpp: 0x10..0x1f and 0x40..0x5f.
KEY128 = bytes(range(0x10, 0x20))
KEY256 = bytes(range(0x40, 0x60))

# Tags and flags (§7.4).
DATA, ENC_DATA, HMAC_TAG, MIG_DATA, ENC_MIG_DATA, IV_DATA, IV_MIG = 1, 2, 3, 4, 5, 6, 7
F_ENC, F_MIG_ENC, F_MIG, F_ENC256, F_MIG256 = 0x01, 0x02, 0x04, 0x08, 0x10


def tlv(tag, value):
    return struct.pack(">HI", tag, len(value)) + value


def header(flags, body, version=2, min_version=1, hdrsize=10):
    return struct.pack(">BBHHI", version, min_version, hdrsize, flags, 10 + len(body)) + body


def pad(data, k):
    p = k - len(data) % k
    return data + bytes([p]) * p


def aes_cbc(key, iv16, data):
    cipher = "aes-256-cbc" if len(key) == 32 else "aes-128-cbc"
    return subprocess.run(
        ["openssl", "enc", "-" + cipher, "-nopad", "-K", key.hex(), "-iv", iv16.hex()],
        input=data, capture_output=True, check=True).stdout


def iv_for(name, k):
    return hashlib.sha256(name.encode()).digest()[:k]


def enc_layer(name, key, plain, data_tag, iv_tag):
    iv = iv_for(name, len(key))
    ct = aes_cbc(key, iv[:16], pad(plain, len(key)))
    mac = hmac.new(key, ct + iv, hashlib.sha256).digest()
    return tlv(data_tag, ct) + tlv(HMAC_TAG, mac) + tlv(iv_tag, iv)


def key_flag(key, flag256):
    return flag256 if len(key) == 32 else 0


def stored(name, plain, key=None):
    if key is None:
        return header(0, tlv(DATA, plain))
    body = enc_layer(name, key, plain, ENC_DATA, IV_DATA)
    return header(F_ENC | key_flag(key, F_ENC256), body)


def migration(name, plain, state_key=None, mig_key=None):
    flags = F_MIG
    if state_key is not None:
        inner = enc_layer(name + "/inner", state_key, plain, ENC_DATA, IV_DATA)
        flags |= F_ENC | key_flag(state_key, F_ENC256)
    else:
        inner = tlv(DATA, plain)
    if mig_key is not None:
        body = enc_layer(name + "/outer", mig_key, inner, ENC_MIG_DATA, IV_MIG)
        flags |= F_MIG_ENC | key_flag(mig_key, F_MIG256)
    else:
        body = tlv(MIG_DATA, inner)
    return header(flags, body)


def legacy_v1(plain, key=None):
    if key is None:
        return header(0, plain, version=1)
    payload = aes_cbc(key, bytes(16), pad(hashlib.sha256(plain).digest() + plain, len(key)))
    return header(F_ENC, payload, version=1)


def main():
    plain = bytes((i * 37 + 11) & 0xFF for i in range(300))
    small = b"TPM state"
    keys = {"none": None, "k128": KEY128, "k256": KEY256}
    seeds = {}
    for kname, key in keys.items():
        seeds[f"stored_{kname}"] = stored(f"stored_{kname}", plain, key)
        seeds[f"stored_small_{kname}"] = stored(f"stored_small_{kname}", small, key)
        seeds[f"stored_empty_{kname}"] = stored(f"stored_empty_{kname}", b"", key)
        seeds[f"v1_{kname}"] = legacy_v1(small, key)
        for mname, mkey in keys.items():
            name = f"mig_{kname}_{mname}"
            seeds[name] = migration(name, small, key, mkey)
    # Malformed and edge cases.
    seeds["header_only"] = header(0, b"")
    seeds["header_only_mig"] = header(F_MIG, b"")
    seeds["bad_minversion"] = header(0, tlv(DATA, small), min_version=3)
    seeds["bad_hdrsize"] = header(0, tlv(DATA, small), hdrsize=12)
    seeds["truncated_tlv"] = header(0, struct.pack(">HI", DATA, 100) + small)
    seeds["enc_no_hmac"] = header(F_ENC, tlv(ENC_DATA, bytes(32)) + tlv(IV_DATA, bytes(16)))
    seeds["enc_no_iv"] = header(F_ENC, (lambda ct: tlv(ENC_DATA, ct) + tlv(
        HMAC_TAG, hmac.new(KEY128, ct, hashlib.sha256).digest()))(
            aes_cbc(KEY128, bytes(16), pad(small, 16))))
    seeds["mig_raw_file"] = stored("mig_raw_file", small, KEY128)  # not a migration blob
    seeds["empty"] = b""

    OUT.mkdir(parents=True, exist_ok=True)
    for name, blob in sorted(seeds.items()):
        (OUT / name).write_bytes(blob)
    print(f"wrote {len(seeds)} seeds to {OUT}")


if __name__ == "__main__":
    main()

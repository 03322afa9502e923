#!/usr/bin/env python3
"""Writes the seed corpora for the fuzz targets: real control-channel messages and replies
(protocol.md §3) into corpus/ctrl/, real data-channel frames (§2.3) into corpus/frame/.

Run from anywhere: python3 test/fuzz/make_corpus.py. The output is committed; rerun it
only when adding seeds. Written independently of the C++ codecs on purpose.
"""
import pathlib
import struct

HERE = pathlib.Path(__file__).resolve().parent


def u32(*values):
    return b"".join(struct.pack(">I", v) for v in values)


def ctrl(code, payload=b""):
    return u32(code) + payload


def frame(tag, code, params=b""):
    return struct.pack(">HII", tag, 10 + len(params), code) + params


CTRL = {
    # requests, as QEMU / swtpm_ioctl send them
    "req_get_capability": ctrl(0x01),
    "req_init_0": ctrl(0x02, u32(0)),
    "req_init_delete_volatile": ctrl(0x02, u32(1)),
    "req_shutdown": ctrl(0x03),
    "req_get_tpmestablished": ctrl(0x04),
    "req_set_locality_qemu": ctrl(0x05, bytes([3, 0, 0, 0])),
    "req_set_locality_1byte": ctrl(0x05, bytes([4])),
    "req_hash_start": ctrl(0x06),
    "req_hash_data": ctrl(0x07, u32(5) + b"hello"),
    "req_hash_data_empty": ctrl(0x07, u32(0)),
    "req_hash_end": ctrl(0x08),
    "req_cancel": ctrl(0x09),
    "req_store_volatile": ctrl(0x0A),
    "req_reset_tpmestablished": ctrl(0x0B, bytes([3, 0, 0, 0])),
    "req_get_stateblob_perm": ctrl(0x0C, u32(1, 1, 0)),
    "req_get_stateblob_vol": ctrl(0x0C, u32(1, 2, 0)),
    "req_get_stateblob_save_offset": ctrl(0x0C, u32(0, 3, 16)),
    "req_set_stateblob_header": ctrl(0x0D, u32(0, 1, 32)),
    "req_set_stateblob_full": ctrl(0x0D, u32(2, 2, 12)) + bytes(range(12)),
    "req_set_stateblob_empty": ctrl(0x0D, u32(0, 3, 0)),
    "req_stop": ctrl(0x0E),
    "req_get_config": ctrl(0x0F),
    "req_set_datafd": ctrl(0x10),
    "req_set_buffersize_query": ctrl(0x11, u32(0)),
    "req_set_buffersize_3968": ctrl(0x11, u32(3968)),
    "req_get_info": ctrl(0x12, struct.pack(">QII", 3, 0, 0)),
    "req_get_info_offset": ctrl(0x12, struct.pack(">QII", 7, 100, 0)),
    "req_lock_storage": ctrl(0x13, u32(300)),
    "req_unknown": ctrl(0x14),
    "req_init_short": ctrl(0x02, b"\x00\x00"),
    # replies, as the daemon sends them
    "rep_error": u32(0x0A),
    "rep_success": u32(0),
    "rep_capability_tpm2": u32(0, 0x0001FFFF),
    "rep_established": u32(0) + bytes([1, 0, 0, 0]),
    "rep_stateblob": u32(0, 2, 6, 6) + b"\x01\x02\x03\x04\x05\x06",
    "rep_stateblob_retry": u32(0x800, 0, 0, 0),
    "rep_config": u32(0, 3),
    "rep_buffersize": u32(0, 4096, 2808, 4096),
    "rep_info": u32(0, 3, 3) + b"{}\x00",
}

TPM2_STARTUP = frame(0x8001, 0x144, b"\x00\x00")
TPM2_GETRANDOM = frame(0x8001, 0x17B, b"\x00\x10")
TPM2_PCR_EXTEND = frame(
    0x8002, 0x182, u32(0) + u32(9) + u32(0x40000009) + b"\x00\x00\x01\x00\x00" + u32(1)
    + b"\x00\x0b" + bytes(32))
FRAME = {
    "tpm2_startup": TPM2_STARTUP,
    "tpm2_getrandom": TPM2_GETRANDOM,
    "tpm2_pcr_extend_sessions": TPM2_PCR_EXTEND,
    "tpm2_shutdown_state": frame(0x8001, 0x145, b"\x00\x01"),
    "tpm2_prefixed_startup": u32(8) + bytes([0]) + u32(len(TPM2_STARTUP)) + TPM2_STARTUP,
    "tpm2_prefixed_loc3": u32(8) + bytes([3]) + u32(len(TPM2_GETRANDOM)) + TPM2_GETRANDOM,
    "tpm2_prefix_only": u32(8) + bytes([0]) + u32(0) + b"\x80",
    "tpm2_two_pipelined": TPM2_GETRANDOM + TPM2_STARTUP,
    "tpm2_set_locality_vendor": frame(0x8001, 0x20001000, bytes([2])),
    "tpm2_not_running_response": frame(0x8001, 0x101),
    "tpm2_oversized_header": struct.pack(">HII", 0x8001, 5000, 0x17B),
    "tpm2_size_too_small": struct.pack(">HII", 0x8001, 9, 0x17B),
    "tpm2_wrapped_response": u32(10) + frame(0x8001, 0) + u32(0),
    "tpm12_startup_clear": frame(0x00C1, 0x99, b"\x00\x01"),
    "tpm12_gettick": frame(0x00C1, 0xF1),
    "tpm12_not_running_response": frame(0x00C4, 0x09),
    "tpm12_oiap": frame(0x00C1, 0x0A),
    "header_partial": TPM2_STARTUP[:7],
}


def write(subdir, items):
    out = HERE / "corpus" / subdir
    out.mkdir(parents=True, exist_ok=True)
    for name, data in items.items():
        (out / name).write_bytes(data)


if __name__ == "__main__":
    write("ctrl", CTRL)
    write("frame", FRAME)

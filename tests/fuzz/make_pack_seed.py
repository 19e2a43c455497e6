#!/usr/bin/env python3
"""Writes the seed corpus of fuzz_pack_reader: small kernel packs with every table filled.

A fuzzer rarely finds a valid SQLite file on its own, so it starts from packs it can damage.
The seeds have the schema of pack/pack_reader.cc (read from there), a complete manifest, a rule,
one binary of each kind (cpu, cubin, ptx) with made-up but well-formed blobs (an ELF header for
x86-64 and for EM_CUDA sm_90, PTX text) and correct SHA-256s, CUDA launch rows, a decision and
a signature row. Usage: make_pack_seed.py OUTPUT_FOLDER (the repository keeps its output in
tests/fuzz/corpus/fuzz_pack_reader/).
"""
import hashlib
import pathlib
import re
import sqlite3
import struct
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]


def schema() -> str:
    text = (ROOT / "pack" / "pack_reader.cc").read_text()
    return re.search(r'kPackSchema = R"sql\((.*?)\)sql"', text, re.S).group(1)


def sha(data) -> str:
    return hashlib.sha256(data if isinstance(data, bytes) else data.encode()).hexdigest()


def elf(machine: int, flags: int, abi_version: int) -> bytes:
    header = bytearray(64)
    header[0:4] = b"\x7fELF"
    header[4], header[5], header[6], header[7], header[8] = 2, 1, 1, 0x41 if machine == 190 else 0, abi_version
    struct.pack_into("<HHI", header, 16, 3, machine, 1)
    struct.pack_into("<I", header, 48, flags)
    return bytes(header) + b"\0" * 64


def write(path: pathlib.Path, cuda: bool) -> None:
    path.unlink(missing_ok=True)
    db = sqlite3.connect(path)
    db.execute("PRAGMA page_size = 512")
    db.executescript(schema())
    rule = "rule sgd {\n  hyper lr = 0.01\n  param -= lr * grad\n}\n"
    db.execute("INSERT INTO rule VALUES ('sgd', ?, ?)", (rule, sha(rule)))
    ir_hash = sha("ir")
    blobs = [("host", "cpu", "x86-64-linux-avx2", elf(62, 0, 0))]
    if cuda:
        blobs += [("sm_90", "cubin", "sm_90", elf(190, 0x6005A04, 8)),
                  ("ptx", "ptx", "compute_80", b"//\n.version 9.0\n.target sm_80\n.address_size 64\n")]
    for target, kind, arch, blob in blobs:
        cursor = db.execute(
            "INSERT INTO binary (rule, config, options, target, kind, backend_target, ir_hash, "
            "name, schedule, chunk_elements, phase_functions, blob, sha256) VALUES "
            "('sgd', 'sgd', '', ?, ?, ?, ?, 'sgd_k', 'v8_u2_c16384', 16384, 'p0_argv\np1_argv', ?, ?)",
            (target, kind, arch, ir_hash, blob, sha(blob)))
        if kind != "cpu":
            db.execute("INSERT INTO cuda_launch VALUES (?, 512, 0, 'v1 layout')", (cursor.lastrowid,))
    config = '{"vector": 8}'
    db.execute("INSERT INTO decision VALUES (?, 'n:e20.0|t:0', ?, ?, 'tuned', ?)",
               (ir_hash, sha("class"), config, sha(config)))
    db.execute("INSERT INTO signature VALUES (?, ?)", ("ab" * 32, "cd" * 64))
    targets = "host,sm_90,ptx" if cuda else "host"
    for key, value in [("format_version", "1"), ("abi_version", "2"), ("fuseopt_version", "0.1.0"),
                       ("created", "1764460800"), ("targets", targets), ("rules", "sgd")]:
        db.execute("INSERT INTO manifest VALUES (?, ?)", (key, value))
    db.commit()
    db.execute("PRAGMA user_version = 1")
    db.execute(f"PRAGMA application_id = {0x4F504B50}")
    db.execute("VACUUM")
    db.close()


def main() -> int:
    out = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else ".")
    out.mkdir(parents=True, exist_ok=True)
    write(out / "cpu.pack", cuda=False)
    write(out / "mixed.pack", cuda=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""AEDAT 3.1 files (jAER / cAER), the format of IBM's original DVS-Gesture archive: polarity events
as tonic-style structured arrays (fields x, y, p, t; t in microseconds).

A file is an ASCII header (lines starting with ``#``, the first ``#!AER-DAT3.1``, the last
``#!END-HEADER\\r\\n``) followed by packets. Each packet has a 28-byte little-endian header
(:data:`PACKET_HEADER`) and then ``eventCapacity * eventSize`` bytes of events, of which the first
``eventNumber`` are used. Polarity packets (``eventType`` 1) hold 8-byte events: a uint32 of
flags and address (bit 0 valid, bit 1 polarity, bits 2..16 y, bits 17..31 x) and a uint32
timestamp whose full value is ``(eventTSOverflow << 31) | timestamp``. Packets of other types
(special events, frames, IMU) are skipped, and so are events whose valid bit is clear.

The bit positions are those of tonic 1.7.0's ``tonic.io.read_dvs_ibm`` (x ``>> 17``, y ``>> 2``,
p ``>> 1``) and of iniVation's ``dv.LegacyAedatFile``, neither of which flips an axis, so x and y
have the orientation of tonic's preprocessed DVS-Gesture copy (made from these files). That
function is not called: in tonic 1.7.0 it unpacks the three values of
``read_aedat_header_from_file`` into two and fails, and its packet reader
(``get_aer_events_from_file``) keeps the events of every packet type, assumes 8-byte events and
ignores ``eventTSOverflow`` and the valid bit; reading with numpy here does all of that.
"""

import struct
from pathlib import Path

import numpy as np

from ..errors import DatasetCorruptError

HEADER_END = b"#!END-HEADER\r\n"
VERSION_LINE = b"#!AER-DAT3"
PACKET_HEADER = struct.Struct("<hhiiiiii")  # type, source, size, ts offset, ts overflow, capacity, number, valid
POLARITY_EVENT = 1
POLARITY_DTYPE = np.dtype([("data", "<u4"), ("timestamp", "<u4")])
EVENT_DTYPE = np.dtype([("x", np.int16), ("y", np.int16), ("p", bool), ("t", np.int64)])  # tonic's DVSGesture.dtype


def corrupt(path: Path, detail: str) -> DatasetCorruptError:
    """The :class:`DatasetCorruptError` to raise for ``path``: corrupt or truncated, ``detail``, extract it again."""
    return DatasetCorruptError(f"AEDAT file {path} is corrupt or truncated: {detail}; delete it and extract it again")


def header_size(path: Path, raw: bytes) -> int:
    """The length of the ASCII header: every line starts with ``#``, the first names AEDAT 3, the
    last is ``#!END-HEADER``."""
    if not raw.startswith(VERSION_LINE):
        raise corrupt(path, f"it does not start with {VERSION_LINE.decode()} (not an AEDAT 3.1 file)")
    end = raw.find(HEADER_END)
    if end < 0:
        raise corrupt(path, "its header has no #!END-HEADER line")
    if any(line and not line.startswith(b"#") for line in raw[:end].split(b"\r\n")):
        raise corrupt(path, "a header line does not start with #")
    return end + len(HEADER_END)


def read_polarity_events(path: Path) -> np.ndarray:
    """The valid polarity events of an AEDAT 3.1 file, in file order, as a structured array with
    fields x, y, p, t (``t`` the full microsecond timestamp, overflow included).

    Raises :class:`DatasetCorruptError` naming ``path`` on a bad header, a truncated packet or a
    polarity packet whose layout is not 8-byte events with the timestamp at offset 4.
    """
    raw = Path(path).read_bytes()
    offset = header_size(path, raw)
    chunks = []
    while offset < len(raw):
        if len(raw) - offset < PACKET_HEADER.size:
            raise corrupt(path, f"a packet header at byte {offset} is cut off")
        kind, _, size, ts_offset, overflow, capacity, number, _ = PACKET_HEADER.unpack_from(raw, offset)
        body = offset + PACKET_HEADER.size
        if size < 1 or capacity < 0 or not 0 <= number <= capacity:
            raise corrupt(path, f"the packet at byte {offset} has size {size}, capacity {capacity}, number {number}")
        if len(raw) - body < capacity * size:
            raise corrupt(path, f"the packet at byte {offset} announces {capacity * size} bytes, {len(raw) - body} remain")
        if kind == POLARITY_EVENT:
            if (size, ts_offset) != (POLARITY_DTYPE.itemsize, 4):
                raise corrupt(path, f"the polarity packet at byte {offset} has {size}-byte events, timestamp at {ts_offset}")
            events = np.frombuffer(raw, POLARITY_DTYPE, count=number, offset=body)
            chunks.append((events, overflow))
        offset = body + capacity * size
    return decode(chunks)


def decode(chunks: list[tuple[np.ndarray, int]]) -> np.ndarray:
    """Structured x, y, p, t events from ``(raw polarity events, eventTSOverflow)`` per packet."""
    data = np.concatenate([events["data"] for events, _ in chunks]) if chunks else np.zeros(0, np.uint32)
    stamps = [events["timestamp"].astype(np.int64) | (np.int64(overflow) << 31) for events, overflow in chunks]
    times = np.concatenate(stamps) if stamps else np.zeros(0, np.int64)
    valid = (data & 1).astype(bool)
    data, times = data[valid], times[valid]
    result = np.zeros(len(data), EVENT_DTYPE)
    result["x"] = (data >> 17) & 0x7FFF
    result["y"] = (data >> 2) & 0x7FFF
    result["p"] = (data >> 1) & 1
    result["t"] = times
    return result

"""Read one whole shard of a store array in one pass.

Zarr 3.1 decodes a shard chunk by chunk through its asynchronous codec pipeline, which costs
about five times the Blosc decompression itself for one-sample chunks. For the layout the
store contract prescribes (sharded along the sample axis only; chunk codecs bytes, Blosc and
optionally CRC32C; index at the end with bytes and optionally CRC32C) `ShardReader` fetches
the shard object once through the array's own Zarr store, checks every checksum and
decompresses each chunk with numcodecs' Blosc. Any other layout, or a range that is not one
whole shard, falls back to ``array[start:stop]``.
"""

from __future__ import annotations

import google_crc32c
import numpy as np
import zarr
from numcodecs import blosc
from zarr.codecs import BloscCodec, BytesCodec, Crc32cCodec, ShardingCodec
from zarr.codecs.sharding import ShardingCodecIndexLocation
from zarr.core.buffer import default_buffer_prototype
from zarr.core.sync import sync

EMPTY = np.uint64(2**64 - 1)  # shard index entry of a chunk that was never written


def _little_bytes(codec) -> bool:
    return isinstance(codec, BytesCodec) and codec.endian in (None, codec.endian.little)


def _fast_layout(arr: zarr.Array) -> tuple[tuple[int, ...], int, bool, bool] | None:
    """(chunk shape, chunks per shard, chunk CRC, index CRC) if the fast path applies."""
    codecs = arr.metadata.codecs
    if len(codecs) != 1 or not isinstance(codecs[0], ShardingCodec):
        return None
    shard = codecs[0]
    inner, index = tuple(shard.codecs), tuple(shard.index_codecs)
    if shard.index_location != ShardingCodecIndexLocation.end:
        return None
    if not (2 <= len(inner) <= 3 and _little_bytes(inner[0]) and isinstance(inner[1], BloscCodec)):
        return None
    if len(inner) == 3 and not isinstance(inner[2], Crc32cCodec):
        return None
    if not (1 <= len(index) <= 2 and _little_bytes(index[0])):
        return None
    if len(index) == 2 and not isinstance(index[1], Crc32cCodec):
        return None
    chunk, shard_shape = tuple(shard.chunk_shape), tuple(arr.shards)
    if chunk[1:] != shard_shape[1:] or shard_shape[1:] != tuple(arr.shape[1:]):
        return None  # only the sample axis may be split
    return chunk, shard_shape[0] // chunk[0], len(inner) == 3, len(index) == 2


def _checked(data: np.ndarray, crc: bool, what: str) -> np.ndarray:
    if not crc:
        return data
    body, stored = data[:-4], bytes(data[-4:])
    if np.uint32(google_crc32c.value(body)).tobytes() != stored:
        raise ValueError(f"{what}: checksum mismatch (corrupted store)")
    return body


class ShardReader:
    """Reads ``array[start:stop]`` for whole shards of one Zarr array, fast when it can.

    Args:
        arr: a Zarr v3 array (opened read-only).
    """

    def __init__(self, arr: zarr.Array):
        self.arr = arr
        self.layout = _fast_layout(arr)
        self.shard = int(arr.shards[0]) if arr.shards else None
        self.dtype = np.dtype(arr.dtype).newbyteorder("<")

    @property
    def fast(self) -> bool:
        """Whether whole-shard reads bypass Zarr's per-chunk pipeline."""
        return self.layout is not None

    def read(self, start: int, stop: int) -> np.ndarray:
        """The samples [start, stop), shape (stop - start, ...)."""
        if self.layout is None or start % self.shard or stop - start > self.shard:
            return self.arr[start:stop]
        if stop != min(start + self.shard, self.arr.shape[0]):
            return self.arr[start:stop]
        return self._decode(start // self.shard)[: stop - start]

    def _decode(self, k: int) -> np.ndarray:
        chunk, n, chunk_crc, index_crc = self.layout
        key = self.arr.metadata.encode_chunk_key((k,) + (0,) * (self.arr.ndim - 1))
        path = f"{self.arr.store_path.path}/{key}" if self.arr.store_path.path else key
        where = f"{self.arr.store_path.store}/{path}"
        out = np.empty((n * chunk[0],) + chunk[1:], dtype=self.dtype)
        buf = sync(self.arr.store_path.store.get(path, prototype=default_buffer_prototype()))
        if buf is None:  # shard never written: all fill value
            out[...] = self.arr.fill_value
            return out
        data = buf.as_numpy_array()
        index_size = 16 * n + (4 if index_crc else 0)
        index = _checked(data[-index_size:], index_crc, f"{where} (shard index)")
        entries = np.frombuffer(index.tobytes(), dtype="<u8").reshape(n, 2)
        for i, (offset, nbytes) in enumerate(entries):
            dest = out[i * chunk[0] : (i + 1) * chunk[0]]
            if offset == EMPTY:
                dest[...] = self.arr.fill_value
                continue
            body = _checked(
                data[int(offset) : int(offset + nbytes)], chunk_crc, f"{where} chunk {i}"
            )
            blosc.decompress(body, dest)  # straight into the output, no intermediate copy
        return out

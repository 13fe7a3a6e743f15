"""HPACK for a client that never touches the peer's dynamic table, each header field's encoding cached.

Used by the modal adapter's lean calls (``loadgen.net.wiregrpc.open_connection(lean=True)``):
the SDK's eight RPCs a lifecycle carry headers that barely change, and h2's own encoder spent
~14 % of a lifecycle's CPU searching and filling its tables (BENCHMARKS.md §9).
"""

from __future__ import annotations


class StatelessEncoder:
    """An HPACK encoder for a client's h2 connection that never touches the peer's dynamic table,
    with each header field's encoding cached: an unchanging header costs a dict lookup.

    Why: h2's own encoder (hpack.Encoder) searches its tables for every field of every request and
    adds most of them to the dynamic table (BENCHMARKS.md §9: ~14 % of a modal lifecycle's CPU,
    29,400 table searches for 300 lifecycles, for eight RPCs a lifecycle whose headers barely
    change). Here a field is the static table's indexed representation where name and value match
    an entry, else a literal without indexing (never indexed for what h2 marks sensitive, e.g.
    ``authorization``), its name by static index where the table has it (RFC 7541 §6.1-6.2). The
    first header block, and the first after the peer changes SETTINGS_HEADER_TABLE_SIZE, opens with a
    dynamic table size update to 0 (§6.3; 0 never exceeds the peer's limit), so the peer's decoder
    holds nothing of ours. The header fields the peer decodes are exactly those given, in order
    (tests/test_provider_modal.py decodes both encoders' blocks and compares them). The cost: bigger
    header blocks (no dynamic-table references), a few hundred bytes a request on loopback.
    The cache is cleared when it passes ``_CACHE_MAX`` entries (fresh values, like idempotency keys
    and timestamps, would otherwise grow it without bound)."""

    _CACHE_MAX = 4096

    def __init__(self):
        from hpack.huffman import HuffmanEncoder
        from hpack.huffman_constants import REQUEST_CODES, REQUEST_CODES_LENGTH
        from hpack.table import HeaderTable

        self._huffman = HuffmanEncoder(REQUEST_CODES, REQUEST_CODES_LENGTH)
        self._full, self._names = {}, {}
        for index, (name, value) in enumerate(HeaderTable.STATIC_TABLE, start=1):
            self._full.setdefault((name, value), index)
            self._names.setdefault(name, index)
        self._cache, self._never = {}, {}  # (name, value) -> encoded field; the never-indexed ones apart
        self._table_size = 4096
        self._announce = True  # the size update to 0 is still to be sent

    @property
    def header_table_size(self) -> int:  # h2 sets it from the peer's SETTINGS_HEADER_TABLE_SIZE
        return self._table_size

    @header_table_size.setter
    def header_table_size(self, value: int) -> None:
        if value != self._table_size:
            self._table_size = value
            self._announce = True

    def encode(self, headers, huffman: bool = True) -> bytes:
        cache, never = self._cache, self._never
        out = [b"\x20"] if self._announce else []
        self._announce = False
        for header in headers:
            key = (header[0], header[1])
            table = cache if getattr(header, "indexable", True) else never
            field = table.get(key)
            if field is None:
                if len(table) >= self._CACHE_MAX:
                    table.clear()
                field = table[key] = self._field(key, table is never)
            out.append(field)
        return b"".join(out)

    def _field(self, key, sensitive: bool) -> bytes:
        name, value = (k if isinstance(k, bytes) else k.encode("utf-8") for k in key)
        if not sensitive:
            index = self._full.get((name, value))
            if index is not None:
                return _hpack_integer(index, 7, 0x80)
        prefix = 0x10 if sensitive else 0x00  # never indexed / without indexing (4-bit name index)
        index = self._names.get(name)
        if index is not None:
            return _hpack_integer(index, 4, prefix) + _hpack_integer(len(value), 7, 0x00) + value
        return bytes([prefix]) + self._huffman_string(name) + _hpack_integer(len(value), 7, 0x00) + value

    def _huffman_string(self, data: bytes) -> bytes:
        """A name, Huffman-coded where shorter. Values go as they are (RFC 7541 §5.2 allows both): a fresh
        value (a key, a timestamp, a token) is a cache miss each time, and coding it costs more CPU than the
        bytes it saves."""
        coded = self._huffman.encode(data)
        if len(coded) < len(data):
            return _hpack_integer(len(coded), 7, 0x80) + coded
        return _hpack_integer(len(data), 7, 0x00) + data



def _hpack_integer(value: int, prefix_bits: int, first: int) -> bytes:
    """RFC 7541 §5.1's integer in a ``prefix_bits`` prefix, ``first``'s bits above it."""
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes([first | value])
    out = [first | limit]
    value -= limit
    while value >= 128:
        out.append((value & 127) | 128)
        value >>= 7
    out.append(value)
    return bytes(out)

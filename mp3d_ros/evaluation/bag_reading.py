"""Read a rosbag2 bag (sqlite3 or MCAP) so that damage costs only the damaged messages.

The ``rosbags`` readers stop at the first damaged byte: a truncated MCAP has no footer and does not
open, a truncated or scribbled sqlite3 file fails its first query, a chunk with a bad checksum ends
the whole iteration. A replay must keep every frame that can be read, so this module reads the
storage files itself:

- ``metadata.yaml`` is checked key by key; anything a replay cannot start from raises
  :class:`ReplayInputError` naming the file and the problem.
- sqlite3: rows are read by id (``WHERE id BETWEEN``, then one id at a time inside a failing range),
  with ``PRAGMA writable_schema`` on a read-only connection so that a file shorter than its header
  says is still opened; unreadable rows are counted and named by id range.
- MCAP: records are scanned from the start, chunk by chunk; a chunk that fails its checksum or
  decompression is skipped (its time range is reported), a record cut short ends the scan.
- Bags with rosbag2 file or message compression are read with ``rosbags``: damage ends reading
  there, and what was read before it is kept.

Messages of each storage file come in stamp order (sqlite3: bag timestamp, then id; MCAP: file
order of the chunks, log time inside each). Damage is recorded as :class:`ReadDamage`, never raised.
"""

from __future__ import annotations

import binascii
import mmap
import sqlite3
from collections import Counter
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import yaml

__all__ = ["ReplayInputError", "BagMetadata", "ReadDamage", "BagSource", "read_metadata",
           "bag_folder"]

STORAGES = ("sqlite3", "mcap")
MAX_ROSBAG2_VERSION = 9
_ROW_BLOCK = 64  # sqlite3 rows fetched per query before falling back to one row at a time


class ReplayInputError(ValueError):
    """Input a replay cannot start from (bag, topics, output path): the message names it."""


@dataclass(frozen=True)
class BagMetadata:
    """What ``metadata.yaml`` promises: storage, files, and message counts per topic."""

    folder: Path
    version: int
    storage: str
    files: tuple[Path, ...]
    topic_types: dict[str, str]
    topic_counts: dict[str, int]
    compression_mode: str
    file_counts: dict[str, int]  # messages per storage file name (0 when not listed)


@dataclass(frozen=True)
class ReadDamage:
    """A part of a storage file that could not be read: where, how many messages, and why."""

    file: str
    where: str
    messages: int | None  # None when the damaged part's message count is unknown
    topic: str | None
    error: str

    def describe(self) -> str:
        count = "an unknown number of messages" if self.messages is None else f"{self.messages} message(s)"
        topic = f" of {self.topic}" if self.topic else ""
        return f"{self.file}: {self.where}: {count}{topic} unreadable ({self.error})"


def bag_folder(path: str | Path) -> Path:
    """The bag folder of ``path`` (a folder with metadata.yaml, or a storage file inside one)."""
    path = Path(path)
    if not path.exists():
        raise ReplayInputError(f"{path}: no such bag folder")
    if path.is_file():
        if not (path.parent / "metadata.yaml").is_file():
            raise ReplayInputError(f"{path}: a storage file without metadata.yaml beside it; give "
                                   "the rosbag2 bag folder")
        return path.parent
    if not (path / "metadata.yaml").is_file():
        raise ReplayInputError(f"{path}: not a rosbag2 bag (no metadata.yaml in the folder)")
    return path


def _require(info: dict, key: str, kind: type | tuple, where: Path) -> Any:
    if key not in info:
        raise ReplayInputError(f"{where}: key {key!r} is missing")
    value = info[key]
    if not isinstance(value, kind) or isinstance(value, bool):
        raise ReplayInputError(f"{where}: {key!r} is {value!r}, expected a {getattr(kind, '__name__', kind)}")
    return value


def read_metadata(bag: str | Path) -> BagMetadata:
    """Check and read ``metadata.yaml`` of the bag ``bag``.

    Raises:
        ReplayInputError: missing, empty or garbage file, unknown version or storage, missing
            storage files, malformed topic list.
    """
    folder = bag_folder(bag)
    where = folder / "metadata.yaml"
    try:
        content = yaml.safe_load(where.read_bytes())
    except OSError as error:
        raise ReplayInputError(f"{where}: cannot be read ({error.strerror})") from None
    except yaml.YAMLError as error:
        raise ReplayInputError(f"{where}: not valid YAML ({str(error).splitlines()[0]})") from None
    if content is None:
        raise ReplayInputError(f"{where}: the file is empty")
    if not isinstance(content, dict) or not isinstance(content.get("rosbag2_bagfile_information"), dict):
        raise ReplayInputError(f"{where}: no 'rosbag2_bagfile_information' mapping; not rosbag2 metadata")
    info = content["rosbag2_bagfile_information"]
    version = _require(info, "version", int, where)
    if not 1 <= version <= MAX_ROSBAG2_VERSION:
        raise ReplayInputError(f"{where}: rosbag2 version {version} is not supported "
                               f"(1 to {MAX_ROSBAG2_VERSION})")
    storage = _require(info, "storage_identifier", str, where)
    if storage not in STORAGES:
        raise ReplayInputError(f"{where}: storage_identifier {storage!r} is not supported; expected "
                               f"{' or '.join(STORAGES)}")
    names = _require(info, "relative_file_paths", list, where)
    files = tuple(folder / Path(str(name)).name for name in names)
    if not files:
        raise ReplayInputError(f"{where}: relative_file_paths is empty: the bag has no storage file")
    if missing := [f.name for f in files if not f.is_file()]:
        raise ReplayInputError(f"{where}: storage file(s) {missing} listed but missing from {folder}")
    types, counts = _topics(_require(info, "topics_with_message_count", list, where), where)
    mode = str(info.get("compression_mode") or "").lower()
    file_counts = {Path(str(f.get("path", ""))).name: int(f.get("message_count") or 0)
                   for f in info.get("files") or [] if isinstance(f, dict)}
    if len(files) == 1 and not file_counts.get(files[0].name):
        file_counts = {files[0].name: int(info.get("message_count") or sum(counts.values()))}
    return BagMetadata(folder, version, storage, files, types, counts,
                       "" if mode == "none" else mode, file_counts)


def _topics(entries: list, where: Path) -> tuple[dict[str, str], dict[str, int]]:
    types, counts = {}, {}
    for entry in entries:
        topic = entry.get("topic_metadata") if isinstance(entry, dict) else None
        if not isinstance(topic, dict) or not isinstance(topic.get("name"), str) \
                or not isinstance(topic.get("type"), str):
            raise ReplayInputError(f"{where}: malformed entry in topics_with_message_count: {entry!r}")
        if topic.get("serialization_format", "cdr") != "cdr":
            raise ReplayInputError(f"{where}: topic {topic['name']} is serialized as "
                                   f"{topic['serialization_format']!r}; only cdr is supported")
        types[topic["name"]] = topic["type"]
        counts[topic["name"]] = int(entry.get("message_count") or 0)
    return types, counts


@dataclass
class BagSource:
    """The readable messages of a bag; every damage met while reading is recorded, once."""

    metadata: BagMetadata
    topic_types: dict[str, str] = field(default_factory=dict)
    definitions: dict[str, str] = field(default_factory=dict)  # msgtype -> ros2msg text in the bag
    read_counts: Counter = field(default_factory=Counter)
    _requested: set[str] = field(default_factory=set)
    _damage: dict[tuple[str, str, str | None], ReadDamage] = field(default_factory=dict)

    @classmethod
    def open(cls, bag: str | Path) -> BagSource:
        """Check the metadata and learn the topics of every storage file (their headers must read).

        Raises:
            ReplayInputError: bad metadata, or a storage file that is not sqlite3/MCAP at all.
        """
        source = cls(read_metadata(bag))
        source.topic_types = dict(source.metadata.topic_types)
        if not source.metadata.compression_mode:
            for path in source.metadata.files:
                topics, definitions = _storage_topics(path, source.metadata.storage)
                source.topic_types.update(topics)
                source.definitions.update(definitions)
        return source

    def typestore(self, default: Any) -> Any:
        """A rosbags Typestore with the bag's own message definitions over those of ``default``.

        Messages are read with the definitions they were recorded with (as rosbags' AnyReader
        does); a definition that does not parse, or one a damaged file lost, comes from ``default``.
        """
        from rosbags.typesys import Stores, get_types_from_msg, get_typestore

        types = dict(default.fielddefs)
        for msgtype, text in self.definitions.items():
            try:
                types.update(get_types_from_msg(text, msgtype))
            except Exception:  # noqa: BLE001 - a garbled definition: keep the default one
                continue
        store = get_typestore(Stores.EMPTY)
        store.register(types)
        return store

    @property
    def damage(self) -> list[ReadDamage]:
        return list(self._damage.values())

    def messages(self, topics: Sequence[str]) -> Iterator[tuple[str, int, bytes]]:
        """``(topic, bag timestamp ns, raw CDR)`` of ``topics``, storage file by file.

        Read each topic in one call only: ``read_counts`` adds up what every call yielded.
        """
        wanted = set(topics)
        if not wanted:
            return
        self._requested |= wanted
        damage: list[ReadDamage] = []
        if self.metadata.compression_mode:
            streams = [_rosbags_messages(self.metadata.folder, wanted, damage)]
        elif self.metadata.storage == "sqlite3":
            streams = [_sqlite_messages(path, wanted, self.metadata.file_counts.get(path.name, 0),
                                        damage) for path in self.metadata.files]
        else:
            streams = [_mcap_messages(path, wanted, damage) for path in self.metadata.files]
        try:
            for stream in streams:
                for topic, stamp_ns, raw in stream:
                    self.read_counts[topic] += 1
                    yield topic, stamp_ns, raw
        finally:  # a damaged part met by several calls (other topics) is reported once
            for item in damage:
                self._damage.setdefault((item.file, item.where, item.topic), item)

    def shortfalls(self) -> dict[str, tuple[int, int]]:
        """``topic -> (read, listed in metadata.yaml)`` for the topics read that came up short."""
        return {topic: (self.read_counts[topic], self.metadata.topic_counts[topic])
                for topic in sorted(self._requested)
                if self.read_counts[topic] < self.metadata.topic_counts.get(topic, 0)}


def _storage_topics(path: Path, storage: str) -> tuple[dict[str, str], dict[str, str]]:
    """``topic -> msgtype`` and ``msgtype -> ros2msg definition`` stored in one storage file."""
    try:
        if storage == "sqlite3":
            with closing(_sqlite_connect(path)) as connection:
                return ({name: msgtype for _, name, msgtype in _sqlite_topics(connection)},
                        _sqlite_definitions(connection))
        scan = _mcap_header(path)
        return dict(scan.channels.values()), scan.definitions()
    except (sqlite3.Error, _McapError, OSError) as error:
        raise ReplayInputError(f"{path}: not a readable {storage} storage file ({error})") from None


# ---------------------------------------------------------------------------------------- sqlite3


def _sqlite_connect(path: Path) -> sqlite3.Connection:
    connection = sqlite3.connect(f"{path.absolute().as_uri()}?mode=ro&immutable=1", uri=True)
    # A truncated file is shorter than its header's page count; without this SQLite refuses to
    # read any page. The connection is read-only, so nothing is ever written.
    connection.execute("PRAGMA writable_schema=ON")
    return connection


def _sqlite_topics(connection: sqlite3.Connection) -> list[tuple[int, str, str]]:
    return connection.execute("SELECT id, name, type FROM topics ORDER BY id").fetchall()


def _sqlite_definitions(connection: sqlite3.Connection) -> dict[str, str]:
    """The ros2msg definitions of rosbag2 schema 4 and later (none in older or damaged files)."""
    try:
        rows = connection.execute("SELECT topic_type, encoding, encoded_message_definition "
                                  "FROM message_definitions").fetchall()
    except sqlite3.Error:
        return {}
    return {msgtype: text for msgtype, encoding, text in rows if encoding == "ros2msg" and text}


def _sqlite_ids(connection: sqlite3.Connection) -> tuple[list[int], str | None]:
    """Message ids from the primary key's table (or as far as it reads), plus the error if any."""
    ids: list[int] = []
    try:
        for (row_id,) in connection.execute("SELECT id FROM messages INDEXED BY timestamp_idx"):
            ids.append(row_id)
        return ids, None
    except sqlite3.Error:
        pass
    ids.clear()
    try:
        for (row_id,) in connection.execute("SELECT id FROM messages NOT INDEXED"):
            ids.append(row_id)
        return ids, None
    except sqlite3.Error as error:
        return ids, str(error)


def _sqlite_index(connection: sqlite3.Connection, topic_ids: dict[int, str], expected: int,
                  file: str, damage: list[ReadDamage]) -> list[tuple[int, int, int]]:
    """``(timestamp, id, topic_id)`` of the readable rows of ``topic_ids``, in stamp order."""
    ids, error = _sqlite_ids(connection)
    if error is not None:  # the table itself is damaged: probe every id the bag should hold
        ids = sorted(set(ids) | set(range(1, max(expected, max(ids, default=0)) + 1)))
    rows, bad = [], []
    marks = ",".join("?" * len(topic_ids))
    query = (f"SELECT timestamp, id, topic_id FROM messages WHERE id BETWEEN ? AND ? "
             f"AND topic_id IN ({marks})")
    ids.sort()
    for start in range(0, len(ids), _ROW_BLOCK):
        block = ids[start:start + _ROW_BLOCK]
        try:
            rows += connection.execute(query, (block[0], block[-1], *topic_ids)).fetchall()
            continue
        except sqlite3.Error as block_error:
            last_error = str(block_error)
        for row_id in block:
            try:
                rows += connection.execute(query, (row_id, row_id, *topic_ids)).fetchall()
            except sqlite3.Error:
                bad.append(row_id)
    for first, last in _runs(bad):
        damage.append(ReadDamage(file, f"rows {first}-{last}", last - first + 1, None, last_error))
    return sorted(rows)


def _runs(values: list[int]) -> list[tuple[int, int]]:
    """Consecutive runs of sorted integers as (first, last)."""
    runs: list[tuple[int, int]] = []
    for value in values:
        if runs and value == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], value)
        else:
            runs.append((value, value))
    return runs


def _sqlite_messages(path: Path, topics: set[str], expected: int,
                     damage: list[ReadDamage]) -> Iterator[tuple[str, int, bytes]]:
    """Messages of ``topics`` in one sqlite3 file that should hold ``expected`` rows in all."""
    with closing(_sqlite_connect(path)) as connection:
        topic_ids = {tid: name for tid, name, _ in _sqlite_topics(connection) if name in topics}
        if not topic_ids:
            return
        rows = _sqlite_index(connection, topic_ids, expected, path.name, damage)
        for stamp_ns, row_id, topic_id in rows:
            try:
                (raw,) = connection.execute("SELECT data FROM messages WHERE id = ?", (row_id,)).fetchone()
            except sqlite3.Error as error:
                damage.append(ReadDamage(path.name, f"row {row_id} at {stamp_ns} ns", 1,
                                         topic_ids[topic_id], str(error)))
                continue
            yield topic_ids[topic_id], stamp_ns, bytes(raw)


# ------------------------------------------------------------------------------------------- MCAP

_MCAP_MAGIC = b"\x89MCAP0\r\n"
_OP_SCHEMA, _OP_CHANNEL, _OP_MESSAGE, _OP_CHUNK, _OP_FOOTER, _OP_DATA_END = 0x03, 0x04, 0x05, 0x06, 0x02, 0x0F


class _McapError(Exception):
    """A malformed MCAP record."""


class _Cursor:
    """Little-endian MCAP field reader over bytes; raises _McapError when a field runs past the end."""

    def __init__(self, data: bytes | memoryview) -> None:
        self.data, self.pos = memoryview(data), 0

    def take(self, size: int) -> memoryview:
        if size < 0 or self.pos + size > len(self.data):
            raise _McapError(f"field of {size} bytes runs past its record")
        self.pos += size
        return self.data[self.pos - size:self.pos]

    def uint(self, size: int) -> int:
        return int.from_bytes(self.take(size), "little")

    def string(self) -> str:
        return bytes(self.take(self.uint(4))).decode("utf-8", "replace")

    def at_end(self) -> bool:
        return self.pos >= len(self.data)


def _decompress(data: memoryview, compression: str, size: int, crc: int) -> bytes:
    if compression == "":
        raw = bytes(data)
    elif compression == "lz4":
        from lz4.frame import decompress

        raw = decompress(bytes(data))
    elif compression == "zstd":
        raw = _zstd_decompress(bytes(data))
    else:
        raise _McapError(f"unsupported chunk compression {compression!r}")
    if len(raw) != size:
        raise _McapError(f"chunk holds {len(raw)} bytes, its header says {size}")
    if crc and binascii.crc32(raw) != crc:
        raise _McapError("chunk checksum mismatch")
    return raw


def _zstd_decompress(data: bytes) -> bytes:
    try:
        from compression import zstd  # Python 3.14
    except ImportError:
        try:
            from backports import zstd  # what rosbags >= 0.11 installs
        except ImportError:
            import zstandard as zstd  # what older rosbags install

    return zstd.decompress(data)


def _mcap_records(data: memoryview | bytes, start: int = 0) -> Iterator[tuple[int, memoryview]]:
    """``(opcode, content)`` of each record from byte ``start``; raises _McapError on a record cut
    short."""
    cursor = _Cursor(data)
    cursor.pos = start
    while not cursor.at_end():
        if len(cursor.data) - cursor.pos < 9:
            raise _McapError(f"record header cut short at byte {cursor.pos}")
        opcode, length = cursor.uint(1), cursor.uint(8)
        if length > len(cursor.data) - cursor.pos:
            raise _McapError(f"record of {length} bytes at byte {cursor.pos - 9} runs past the end "
                             f"({len(cursor.data) - cursor.pos} bytes left)")
        yield opcode, cursor.take(length)


class _McapScan:
    """State of one scan: schemas and channels seen so far."""

    def __init__(self) -> None:
        self.schemas: dict[int, tuple[str, str, bytes]] = {}  # id -> (msgtype, encoding, data)
        self.channels: dict[int, tuple[str, str]] = {}  # id -> (topic, msgtype)

    def definitions(self) -> dict[str, str]:
        return {name: data.decode("utf-8", "replace")
                for name, encoding, data in self.schemas.values() if encoding == "ros2msg" and data}

    def record(self, opcode: int, content: memoryview) -> tuple[int, int, memoryview] | None:
        """Learn a schema or channel; return ``(channel, log_time, data)`` of a message record."""
        cursor = _Cursor(content)
        if opcode == _OP_SCHEMA:
            key, name, encoding = cursor.uint(2), cursor.string(), cursor.string()
            self.schemas[key] = (name, encoding, bytes(cursor.take(cursor.uint(4))))
        elif opcode == _OP_CHANNEL:
            key, schema = cursor.uint(2), cursor.uint(2)
            self.channels[key] = (cursor.string(), self.schemas.get(schema, ("", "", b""))[0])
        elif opcode == _OP_MESSAGE:
            channel, _, log_time, _ = cursor.uint(2), cursor.uint(4), cursor.uint(8), cursor.uint(8)
            return channel, log_time, cursor.take(len(content) - cursor.pos)
        return None


def _open_mcap(path: Path) -> memoryview:
    """The file's bytes, memory-mapped (a bag may be larger than memory)."""
    with path.open("rb") as file:
        if path.stat().st_size < len(_MCAP_MAGIC):
            raise _McapError(f"the file has {path.stat().st_size} bytes, too few for MCAP")
        data = memoryview(mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ))
    if bytes(data[:8]) != _MCAP_MAGIC:
        raise _McapError("the file does not start with the MCAP magic")
    return data


def _read_summary(data: memoryview, scan: _McapScan) -> bool:
    """Learn the schemas and channels of the summary section (False when there is none intact).

    The summary repeats every channel, so messages stay readable when the chunk that defined their
    channel is damaged.
    """
    footer = len(data) - 8 - 29
    if footer < 8 or bytes(data[-8:]) != _MCAP_MAGIC or data[footer] != _OP_FOOTER:
        return False
    summary_start = int.from_bytes(data[footer + 9:footer + 17], "little")
    if not 8 <= summary_start <= footer:
        return False
    try:
        for opcode, content in _mcap_records(data[summary_start:footer]):
            if opcode in (_OP_SCHEMA, _OP_CHANNEL):
                scan.record(opcode, content)
    except _McapError:
        return False
    return True


def _mcap_header(path: Path) -> _McapScan:
    """Schemas and channels of the summary section, else of the records up to the first chunk
    that defines any (rosbags and rosbag2 write them before the first message)."""
    scan = _McapScan()
    data = _open_mcap(path)
    if _read_summary(data, scan):
        return scan
    try:
        for opcode, content in _mcap_records(data, len(_MCAP_MAGIC)):
            records = _mcap_records(_chunk_records(content)) if opcode == _OP_CHUNK else [(opcode, content)]
            for inner, inner_content in records:
                scan.record(inner, inner_content)
            if scan.channels:
                break
    except Exception:  # noqa: BLE001 - damage here is met again, and reported, when reading
        pass
    return scan


def _chunk_records(content: memoryview) -> bytes:
    cursor = _Cursor(content)
    cursor.uint(8), cursor.uint(8)  # message start and end time
    size, crc = cursor.uint(8), cursor.uint(4)
    compression = cursor.string()
    return _decompress(cursor.take(cursor.uint(8)), compression, size, crc)


def _chunk_times(content: memoryview) -> str:
    cursor = _Cursor(content)
    return f"messages {cursor.uint(8)}-{cursor.uint(8)} ns"


def _mcap_messages(path: Path, topics: set[str],
                   damage: list[ReadDamage]) -> Iterator[tuple[str, int, bytes]]:
    scan = _McapScan()
    data = _open_mcap(path)
    _read_summary(data, scan)
    unknown: Counter = Counter()
    try:
        for opcode, content in _mcap_records(data, len(_MCAP_MAGIC)):
            if opcode in (_OP_FOOTER, _OP_DATA_END):
                break
            if opcode != _OP_CHUNK:
                found = scan.record(opcode, content)
                if found is not None:
                    yield from _wanted(scan, [found], topics, unknown)
                continue
            try:
                messages = [m for op, c in _mcap_records(_chunk_records(content))
                            if (m := scan.record(op, c)) is not None]
            except Exception as error:  # noqa: BLE001 - lz4/zstd raise their own types
                damage.append(ReadDamage(path.name, f"chunk with {_chunk_times(content)}", None, None,
                                         f"{type(error).__name__}: {error}"))
                continue
            yield from _wanted(scan, sorted(messages, key=lambda m: m[1]), topics, unknown)
    except _McapError as error:
        damage.append(ReadDamage(path.name, "end of the file", None, None, f"file cut short: {error}"))
    for channel, count in sorted(unknown.items()):
        damage.append(ReadDamage(path.name, f"channel {channel}", count, None,
                                 "its channel record was in a damaged part"))


def _wanted(scan: _McapScan, messages: list, topics: set[str],
            unknown: Counter) -> Iterator[tuple[str, int, bytes]]:
    for channel, log_time, data in messages:
        if channel not in scan.channels:
            unknown[channel] += 1
        elif scan.channels[channel][0] in topics:
            yield scan.channels[channel][0], log_time, bytes(data)


# ---------------------------------------------------------------------------- compressed (rosbags)


def _rosbags_messages(folder: Path, topics: set[str],
                      damage: list[ReadDamage]) -> Iterator[tuple[str, int, bytes]]:
    """Read a compressed bag with rosbags; damage ends reading there."""
    from rosbags.rosbag2 import Reader

    try:
        with Reader(folder) as reader:
            connections = [c for c in reader.connections if c.topic in topics]
            if not connections:  # an empty list would mean every connection
                return
            for connection, stamp_ns, raw in reader.messages(connections=connections):
                yield connection.topic, stamp_ns, raw
    except Exception as error:  # noqa: BLE001 - rosbags raises several types on damaged data
        damage.append(ReadDamage(folder.name, "compressed bag", None, None,
                                 f"{type(error).__name__}: {error}; reading stopped there"))

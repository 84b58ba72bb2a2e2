# Reads a Borg 1.x repository through Borg's own Python modules, for `aeon import borg`.
#
# Borg 1.2's `export-tar` writes GNU tar only, which drops xattrs, ACLs, sub-second times,
# atime and ctime; Borg's own item reader gives every attribute it stored. Usage:
#   python3 borg_reader.py list REPO            -> one JSON document on stdout
#   python3 borg_reader.py items REPO ARCHIVE   -> frames on stdout:
#       b"I" + u32 length + JSON   an item (bytes fields in hex)
#       b"D" + u32 length + bytes  a piece of the preceding item's content
#       b"Z" + u32 0               the end
# Errors go to stderr as one line starting "error: ", with exit status 2.
import json
import os
import stat
import struct
import sys


def fail(message):
    sys.stderr.write("error: %s\n" % message)
    sys.exit(2)


try:
    import borg
    from borg.logger import setup_logging
    from borg.archive import Archive
    from borg.helpers import Location, Manifest
    from borg.repository import Repository
    from borg.remote import RemoteRepository
except Exception as e:  # an unsupported Borg, or none
    fail("cannot load Borg's modules (%s): aeon imports through Borg 1.1 to 1.4" % e)

if not borg.__version__.startswith("1."):
    fail("Borg %s is not supported: aeon imports through Borg 1.1 to 1.4" % borg.__version__)

ACL_TAGS = {"user": 0x01, "u": 0x01, "group": 0x04, "g": 0x04, "mask": 0x10, "m": 0x10, "other": 0x20, "o": 0x20}


def acl_xattr(text):
    """Borg's ACL text (acl_to_text, with numeric ids appended) as the kernel's
    system.posix_acl_* value: version 2, then (tag u16, perm u16, id u32), sorted."""
    entries = []
    for line in text.decode("utf-8", "surrogateescape").split("\n"):
        line = line.split("#")[0].strip()
        if not line:
            continue
        fields = line.split(":")
        tag = ACL_TAGS.get(fields[0])
        if tag is None or len(fields) < 3:
            raise ValueError("unknown ACL entry %r" % line)
        qualifier = fields[1]
        perms = fields[2]
        ident = 0xFFFFFFFF
        if qualifier:
            tag = {0x01: 0x02, 0x04: 0x08}[tag]
            ident = int(fields[3] if len(fields) > 3 else qualifier)
        perm = (4 if "r" in perms else 0) | (2 if "w" in perms else 0) | (1 if "x" in perms else 0)
        entries.append((tag, ident, perm))
    entries.sort()
    out = struct.pack("<I", 2)
    for tag, ident, perm in entries:
        out += struct.pack("<HHI", tag, perm, ident)
    return out


def open_repository(spec):
    location = Location(spec)
    if location.proto == "ssh":
        return RemoteRepository(location.omit_archive(), exclusive=False, lock=True)
    return Repository(location.path, exclusive=False, lock=True)


def iso(ts):
    from datetime import timezone
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=timezone.utc)
    return ts.isoformat()


def list_archives(spec):
    with open_repository(spec) as repository:
        manifest, key = Manifest.load(repository, (Manifest.Operation.READ,))
        archives = []
        for info in manifest.archives.list(sort_by=["ts"]):
            archive = Archive(repository, key, manifest, info.name)
            m = archive.metadata
            archives.append({
                "name": info.name,
                "id": info.id.hex(),
                "time": iso(archive.ts),
                "hostname": m.get("hostname", ""),
                "username": m.get("username", ""),
                "command_line": list(m.get("cmdline", [])),
                "comment": m.get("comment", ""),
            })
        json.dump({"repository": repository.id.hex(), "borg": borg.__version__, "archives": archives}, sys.stdout)


def frame(out, tag, data):
    out.write(tag + struct.pack("<I", len(data)))
    out.write(data)


def items(spec, name):
    out = sys.stdout.buffer
    with open_repository(spec) as repository:
        manifest, key = Manifest.load(repository, (Manifest.Operation.READ,))
        archive = Archive(repository, key, manifest, name)
        for item in archive.iter_items(preload=True):
            d = {"path": os.fsencode(item.path).hex(), "mode": item.mode, "mtime": item.mtime}
            for k in ("uid", "gid", "user", "group", "atime", "ctime", "birthtime", "rdev", "bsdflags"):
                v = item.get(k)
                if v is not None:
                    d[k] = v
            if "source" in item:
                d["source"] = os.fsencode(item.source).hex()
            if "hardlink_master" in item:
                d["hardlink_master"] = bool(item.hardlink_master)
            xattrs = {}
            for k, v in (item.get("xattrs") or {}).items():
                xattrs[bytes(k).hex()] = bytes(v).hex()
            for k, attr in (("acl_access", b"system.posix_acl_access"), ("acl_default", b"system.posix_acl_default")):
                if item.get(k):
                    xattrs[attr.hex()] = acl_xattr(item.get(k)).hex()
            for k in ("acl_extended", "acl_nfs4"):
                if item.get(k):
                    d["unsupported_" + k] = True
            d["xattrs"] = xattrs
            chunks = item.get("chunks")
            d["has_content"] = chunks is not None and stat.S_ISREG(item.mode)
            frame(out, b"I", json.dumps(d).encode())
            if chunks is not None:
                ids = [c.id for c in chunks]
                for data in archive.pipeline.fetch_many(ids, is_preloaded=True):
                    frame(out, b"D", bytes(data))
        frame(out, b"Z", b"")
    out.flush()


def main():
    setup_logging(level="warning")
    try:
        if sys.argv[1] == "list":
            list_archives(sys.argv[2])
        elif sys.argv[1] == "items":
            items(sys.argv[2], sys.argv[3])
        else:
            fail("unknown mode %r" % sys.argv[1])
    except BrokenPipeError:
        sys.exit(1)
    except Exception as e:
        fail("%s: %s" % (type(e).__name__, str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__))


main()

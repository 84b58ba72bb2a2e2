//! Directory trees: one blob per directory, listing its entries sorted by name.
//!
//! Encoded as CBOR maps with named keys; absent optional keys take their defaults, so new
//! metadata (xattrs, ACLs, sparse maps, ...) is added without a format version change.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::Result;
use crate::format;
use crate::id::Id;

/// A file name or symlink target as raw bytes: POSIX names need not be UTF-8.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct RawName(pub Vec<u8>);

impl RawName {
    pub fn to_string_lossy(&self) -> String {
        String::from_utf8_lossy(&self.0).into_owned()
    }
    pub fn as_os_str(&self) -> &std::ffi::OsStr {
        use std::os::unix::ffi::OsStrExt;
        std::ffi::OsStr::from_bytes(&self.0)
    }
}

impl std::fmt::Debug for RawName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.to_string_lossy())
    }
}

impl Serialize for RawName {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        if !s.is_human_readable() {
            return s.serialize_bytes(&self.0);
        }
        match std::str::from_utf8(&self.0) {
            Ok(text) => s.serialize_str(text),
            // JSON cannot hold arbitrary bytes; show them losslessly as hex.
            Err(_) => s.serialize_str(&format!("hex:{}", hex::encode(&self.0))),
        }
    }
}

impl<'de> Deserialize<'de> for RawName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        if d.is_human_readable() {
            Ok(RawName(String::deserialize(d)?.into_bytes()))
        } else {
            Ok(RawName(serde_bytes::ByteBuf::deserialize(d)?.into_vec()))
        }
    }
}

/// Seconds and nanoseconds since the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Serialize, Deserialize)]
pub struct Timestamp(pub i64, pub u32);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeKind {
    File,
    Dir,
    Symlink,
    Fifo,
    Chardev,
    Blockdev,
    Socket,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

/// One directory entry with its metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    pub name: RawName,
    #[serde(rename = "type")]
    pub kind: NodeKind,
    /// Permission bits including setuid, setgid and sticky (`st_mode & 0o7777`).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    pub mtime: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub atime: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ctime: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub size: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub inode: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub device: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub links: u64,
    /// Data blob ids of a regular file, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub content: Vec<Id>,
    /// Tree blob id of a directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subtree: Option<Id>,
    /// Target of a symlink, as stored in the link.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<RawName>,
    /// Device number of a character or block device.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rdev: Option<u64>,
    /// Extended attributes in every readable namespace, POSIX ACLs included
    /// (`system.posix_acl_access`, `system.posix_acl_default`), sorted by name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub xattrs: Vec<Xattr>,
}

/// One extended attribute, name and value as raw bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Xattr {
    pub name: RawName,
    pub value: RawName,
}

impl Node {
    pub fn new(name: RawName, kind: NodeKind) -> Node {
        Node {
            name,
            kind,
            mode: 0,
            uid: 0,
            gid: 0,
            user: None,
            group: None,
            mtime: Timestamp::default(),
            atime: None,
            ctime: None,
            size: 0,
            inode: 0,
            device: 0,
            links: 0,
            content: Vec::new(),
            subtree: None,
            target: None,
            rdev: None,
            xattrs: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tree {
    pub nodes: Vec<Node>,
}

impl Tree {
    /// Sorts entries by name bytes: the canonical order that makes equal directories encode,
    /// and so deduplicate, identically.
    pub fn sort(&mut self) {
        self.nodes.sort_by(|a, b| a.name.cmp(&b.name));
    }

    pub fn encode(&self) -> Vec<u8> {
        format::to_cbor(self)
    }

    pub fn decode(data: &[u8], what: &str) -> Result<Tree> {
        format::from_cbor(data, what)
    }

    /// Every fault of every entry, by entry position, in order (see [`NodeFault`]).
    pub fn faults(&self) -> Vec<(usize, NodeFault)> {
        let mut out = Vec::new();
        // Names strictly ascending, as every writer stores them, can hold no duplicate: the set
        // of names is only built for a tree that is not.
        let sorted = self.nodes.windows(2).all(|w| w[0].name < w[1].name);
        let mut seen = std::collections::HashSet::new();
        for (i, node) in self.nodes.iter().enumerate() {
            if let Some(fault) = node.own_fault() {
                out.push((i, fault));
            }
            if sorted {
                continue;
            }
            if !seen.insert(node.name.0.as_slice()) {
                out.push((i, NodeFault::DuplicateName));
            } else if i > 0 && self.nodes[i - 1].name.0 > node.name.0 {
                out.push((i, NodeFault::OutOfOrder));
            }
        }
        out
    }

    /// The tree as readers use it: legacy symlinks carrying a subtree become directories.
    pub fn for_readers(mut self) -> Tree {
        self.nodes.iter_mut().for_each(Node::as_legacy_directory);
        self
    }

    pub fn find(&self, name: &[u8]) -> Option<&Node> {
        self.nodes.binary_search_by(|n| n.name.0.as_slice().cmp(name)).ok().map(|i| &self.nodes[i])
    }
}

/// The deepest directory nesting any reader or writer follows. A backup cannot record more:
/// each level costs at least two bytes of a path, and the kernel names at most 4,096 bytes
/// (PATH_MAX). Deeper trees can only be crafted; they are refused with an error instead of
/// exhausting the stack.
pub const MAX_DEPTH: usize = 4096;

/// The stack a thread needs to follow [`MAX_DEPTH`] levels with the recursive walks (restore's
/// plan, ls, find, diff, dump, copy, check), with room to spare even in debug builds. Only the
/// pages touched are ever allocated.
pub const DEEP_WALK_STACK: usize = 256 << 20;

/// Refuses to go below [`MAX_DEPTH`] levels; `depth` counts from the recovery point's root.
pub fn ensure_depth(depth: usize, at: &dyn std::fmt::Display) -> Result<()> {
    if depth > MAX_DEPTH {
        return Err(crate::error::Error::corrupt(
            format!("tree at {at}"),
            format!("nested deeper than {MAX_DEPTH} levels, more than any backup can record"),
        ));
    }
    Ok(())
}

/// The depth of a `/`-separated path inside a recovery point.
pub fn depth_of(path: &str) -> usize {
    path.split('/').filter(|p| !p.is_empty()).count()
}

/// A name that stays inside its directory: not empty, `.` or `..`, and without `/` or NUL.
pub fn is_safe_name(name: &[u8]) -> bool {
    !(name.is_empty() || name == b"." || name == b".." || name.contains(&b'/') || name.contains(&0))
}

/// What makes one entry of a stored tree not well formed. `check` reports every fault; readers
/// (restore, ls, find, diff, dump) refuse the entries with a fault that [`NodeFault::refused`]
/// says they cannot use, and nothing else: so a tree that `check` accepts is restored whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeFault {
    /// Would step outside its directory (`..`, `a/b`, empty, NUL).
    UnsafeName,
    /// A second entry of the same name.
    DuplicateName,
    /// Not sorted after the entry before it (lookups by name could miss it).
    OutOfOrder,
    /// A directory without a tree of its own.
    DirWithoutSubtree,
    /// A symbolic link that also carries a subtree: written by aeon before 2026-12-07 for a
    /// source below a symlinked directory. Readers take it as the directory it led to.
    SymlinkWithSubtree,
    SymlinkWithoutTarget,
    /// Data, a subtree or a link target on an entry of a kind that has none.
    FieldOfAnotherKind,
}

impl NodeFault {
    /// Readers skip (and report) the entry: using it could write outside the target, write one
    /// path twice, or invent content.
    pub fn refused(self) -> bool {
        !matches!(self, NodeFault::OutOfOrder | NodeFault::SymlinkWithSubtree)
    }
}

impl std::fmt::Display for NodeFault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            NodeFault::UnsafeName => "unsafe name",
            NodeFault::DuplicateName => "duplicate name",
            NodeFault::OutOfOrder => "entry out of order",
            NodeFault::DirWithoutSubtree => "directory without a subtree",
            NodeFault::SymlinkWithSubtree => {
                "symbolic link carrying a subtree (made through a symlinked parent by an aeon \
                 before 2026-12; readers take it as a directory)"
            }
            NodeFault::SymlinkWithoutTarget => "symbolic link without a target",
            NodeFault::FieldOfAnotherKind => "data, subtree or target on an entry of another kind",
        })
    }
}

impl Node {
    /// The faults of this entry on its own (not the ones that depend on its neighbours).
    pub fn own_fault(&self) -> Option<NodeFault> {
        if !is_safe_name(&self.name.0) {
            return Some(NodeFault::UnsafeName);
        }
        let (content, subtree, target) =
            (!self.content.is_empty(), self.subtree.is_some(), self.target.is_some());
        match self.kind {
            NodeKind::Dir if !subtree => Some(NodeFault::DirWithoutSubtree),
            NodeKind::Dir if content || target => Some(NodeFault::FieldOfAnotherKind),
            NodeKind::Symlink if subtree => Some(NodeFault::SymlinkWithSubtree),
            NodeKind::Symlink if !target => Some(NodeFault::SymlinkWithoutTarget),
            NodeKind::Symlink if content => Some(NodeFault::FieldOfAnotherKind),
            NodeKind::File if subtree || target => Some(NodeFault::FieldOfAnotherKind),
            NodeKind::Fifo | NodeKind::Chardev | NodeKind::Blockdev | NodeKind::Socket
                if content || subtree || target =>
            {
                Some(NodeFault::FieldOfAnotherKind)
            }
            _ => None,
        }
    }

    /// A legacy symlink carrying a subtree, as the directory it stood for (see
    /// [`NodeFault::SymlinkWithSubtree`]); its mode was the link's 0777, so it gets 0755.
    fn as_legacy_directory(&mut self) {
        if self.kind == NodeKind::Symlink && self.subtree.is_some() {
            self.kind = NodeKind::Dir;
            self.target = None;
            self.mode = 0o755;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn arb_timestamp() -> impl Strategy<Value = Timestamp> {
        (any::<i64>(), 0u32..1_000_000_000).prop_map(|(s, ns)| Timestamp(s, ns))
    }

    fn arb_bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(any::<u8>(), 0..max)
    }

    /// Nodes with every field drawn, each optional one present or absent.
    fn arb_node() -> impl Strategy<Value = Node> {
        let kinds = prop_oneof![
            Just(NodeKind::File),
            Just(NodeKind::Dir),
            Just(NodeKind::Symlink),
            Just(NodeKind::Fifo),
            Just(NodeKind::Chardev),
            Just(NodeKind::Blockdev),
            Just(NodeKind::Socket),
        ];
        let identity = (
            proptest::collection::vec(any::<u8>(), 1..20),
            kinds,
            0u32..0o7777,
            any::<u32>(),
            any::<u32>(),
            proptest::option::of("[a-zé中]{0,12}"),
            proptest::option::of("[a-z]{0,12}"),
        );
        let times = (
            arb_timestamp(),
            proptest::option::of(arb_timestamp()),
            proptest::option::of(arb_timestamp()),
        );
        let numbers = (any::<u64>(), any::<u64>(), any::<u64>(), any::<u64>()).prop_map(
            // Small values too: CBOR writes integers in the fewest bytes, a boundary to cover.
            |(size, inode, device, links)| {
                (size >> (size % 64), inode % 70_000, device, links % 300)
            },
        );
        let content = (
            proptest::collection::vec(any::<[u8; 32]>(), 0..4),
            proptest::option::of(any::<[u8; 32]>()),
            proptest::option::of(arb_bytes(30)),
            proptest::option::of(any::<u64>()),
            proptest::collection::vec((arb_bytes(20), arb_bytes(40)), 0..3),
        );
        (identity, times, numbers, content).prop_map(
            |(
                (name, kind, mode, uid, gid, user, group),
                (mtime, atime, ctime),
                (size, inode, device, links),
                (blobs, subtree, target, rdev, xattrs),
            )| {
                let mut n = Node::new(RawName(name), kind);
                n.mode = mode;
                n.uid = uid;
                n.gid = gid;
                n.user = user;
                n.group = group;
                n.mtime = mtime;
                n.atime = atime;
                n.ctime = ctime;
                n.size = size;
                n.inode = inode;
                n.device = device;
                n.links = links;
                n.content = blobs.into_iter().map(Id).collect();
                n.subtree = subtree.map(Id);
                n.target = target.map(RawName);
                n.rdev = rdev;
                n.xattrs = xattrs
                    .into_iter()
                    .map(|(name, value)| Xattr { name: RawName(name), value: RawName(value) })
                    .collect();
                n
            },
        )
    }

    proptest! {
        #[test]
        fn tree_round_trip(nodes in proptest::collection::vec(arb_node(), 0..10)) {
            let mut t = Tree { nodes };
            t.sort();
            let bytes = t.encode();
            prop_assert_eq!(Tree::decode(&bytes, "t").unwrap(), t.clone());
            prop_assert_eq!(t.encode(), bytes, "encoding is deterministic");
        }

        /// A tree's id is the hash of its encoding: the encoder of earlier releases (ciborium)
        /// and today's must agree byte for byte, or every directory of a backup whose parent
        /// was written by an earlier release would be stored again.
        #[test]
        fn tree_encodes_as_earlier_releases_did(nodes in proptest::collection::vec(arb_node(), 0..10)) {
            let mut t = Tree { nodes };
            t.sort();
            let mut earlier = Vec::new();
            ciborium::into_writer(&t, &mut earlier).unwrap();
            prop_assert_eq!(t.encode(), earlier.clone());
            prop_assert_eq!(Tree::decode(&earlier, "t").unwrap(), t);
        }

        #[test]
        fn tree_decode_never_panics(data in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = Tree::decode(&data, "t");
        }
    }

    #[test]
    fn non_utf8_names_survive_and_show_as_hex_in_json() {
        let mut t =
            Tree { nodes: vec![Node::new(RawName(vec![0xff, b'a', b'\n']), NodeKind::Dir)] };
        t.sort();
        let back = Tree::decode(&t.encode(), "t").unwrap();
        assert_eq!(back.nodes[0].name.0, vec![0xff, b'a', b'\n']);
        let json = serde_json::to_string(&t).unwrap();
        assert!(json.contains("hex:ff610a"), "{json}");
    }
}

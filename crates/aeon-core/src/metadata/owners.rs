//! User and group names, looked up once per id or name.

use std::collections::HashMap;
use std::ffi::{CStr, CString};
use std::sync::Mutex;

#[derive(Default)]
pub struct OwnerNames {
    users: Mutex<HashMap<u32, Option<String>>>,
    groups: Mutex<HashMap<u32, Option<String>>>,
    uids: Mutex<HashMap<String, Option<u32>>>,
    gids: Mutex<HashMap<String, Option<u32>>>,
}

/// Calls a reentrant passwd/group lookup with a growing buffer.
fn with_buffer<T>(
    mut call: impl FnMut(&mut Vec<libc::c_char>) -> (libc::c_int, Option<T>),
) -> Option<T> {
    let mut buf = vec![0 as libc::c_char; 1024];
    loop {
        let (rc, found) = call(&mut buf);
        if rc == libc::ERANGE && buf.len() < 1 << 20 {
            buf.resize(buf.len() * 2, 0);
            continue;
        }
        return found;
    }
}

fn user_name(uid: u32) -> Option<String> {
    with_buffer(|buf| {
        // SAFETY: all pointers are valid for the call; `result` is only read when non-null.
        unsafe {
            let mut pw: libc::passwd = std::mem::zeroed();
            let mut result = std::ptr::null_mut();
            let rc = libc::getpwuid_r(uid, &mut pw, buf.as_mut_ptr(), buf.len(), &mut result);
            let name = (!result.is_null())
                .then(|| CStr::from_ptr(pw.pw_name).to_string_lossy().into_owned());
            (rc, name)
        }
    })
}

fn group_name(gid: u32) -> Option<String> {
    with_buffer(|buf| {
        // SAFETY: as in user_name.
        unsafe {
            let mut gr: libc::group = std::mem::zeroed();
            let mut result = std::ptr::null_mut();
            let rc = libc::getgrgid_r(gid, &mut gr, buf.as_mut_ptr(), buf.len(), &mut result);
            let name = (!result.is_null())
                .then(|| CStr::from_ptr(gr.gr_name).to_string_lossy().into_owned());
            (rc, name)
        }
    })
}

fn uid_of(name: &str) -> Option<u32> {
    let c = CString::new(name).ok()?;
    with_buffer(|buf| {
        // SAFETY: as in user_name.
        unsafe {
            let mut pw: libc::passwd = std::mem::zeroed();
            let mut result = std::ptr::null_mut();
            let rc =
                libc::getpwnam_r(c.as_ptr(), &mut pw, buf.as_mut_ptr(), buf.len(), &mut result);
            (rc, (!result.is_null()).then_some(pw.pw_uid))
        }
    })
}

fn gid_of(name: &str) -> Option<u32> {
    let c = CString::new(name).ok()?;
    with_buffer(|buf| {
        // SAFETY: as in user_name.
        unsafe {
            let mut gr: libc::group = std::mem::zeroed();
            let mut result = std::ptr::null_mut();
            let rc =
                libc::getgrnam_r(c.as_ptr(), &mut gr, buf.as_mut_ptr(), buf.len(), &mut result);
            (rc, (!result.is_null()).then_some(gr.gr_gid))
        }
    })
}

fn cached<K: std::hash::Hash + Eq + Clone, V: Clone>(
    map: &Mutex<HashMap<K, V>>,
    key: &K,
    lookup: impl FnOnce() -> V,
) -> V {
    if let Some(v) = map.lock().unwrap_or_else(|p| p.into_inner()).get(key) {
        return v.clone();
    }
    let v = lookup();
    map.lock().unwrap_or_else(|p| p.into_inner()).insert(key.clone(), v.clone());
    v
}

impl OwnerNames {
    pub fn user(&self, uid: u32) -> Option<String> {
        cached(&self.users, &uid, || user_name(uid))
    }
    pub fn group(&self, gid: u32) -> Option<String> {
        cached(&self.groups, &gid, || group_name(gid))
    }
    pub fn uid(&self, name: &str) -> Option<u32> {
        cached(&self.uids, &name.to_string(), || uid_of(name))
    }
    pub fn gid(&self, name: &str) -> Option<u32> {
        cached(&self.gids, &name.to_string(), || gid_of(name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_is_known_both_ways() {
        let o = OwnerNames::default();
        assert_eq!(o.user(0).as_deref(), Some("root"));
        assert_eq!(o.uid("root"), Some(0));
        assert_eq!(o.gid("root"), Some(0));
        assert_eq!(o.uid("no-such-user-aeon"), None);
    }
}

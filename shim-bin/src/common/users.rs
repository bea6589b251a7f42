//! `-u USER[:GROUP]` as docker takes it: numbers, or names looked up in the container's own
//! `/etc/passwd` and `/etc/group` (the rootfs's, never the host's).
//!
//! A name needs the rootfs; the files are read only when they are plain files under a plain
//! `etc` directory (a link there could name a file of the host's), and only their first MiB.

use oci_spec::runtime::User;
use std::path::Path;

/// The most of `/etc/passwd` or `/etc/group` read.
const MAX_FILE: u64 = 1 << 20;

/// Resolves `text` (`UID`, `NAME`, `UID:GID`, `NAME:GROUP`, ...) against `rootfs`. Without a
/// group, the user's own group from `/etc/passwd` (or, for a uid it does not list, the uid).
pub fn resolve(text: &str, rootfs: Option<&Path>) -> Result<User, String> {
    let (user, group) = match text.split_once(':') {
        Some((user, group)) => (user, Some(group)),
        None => (text, None),
    };
    if user.is_empty() || group.is_some_and(str::is_empty) {
        return Err(format!("user {text:?} is not USER[:GROUP]"));
    }
    let passwd = || read_table(rootfs, "passwd", text);
    let (uid, primary) = match user.parse::<u32>() {
        Ok(uid) => {
            let table = rootfs.and_then(|_| passwd().ok()).unwrap_or_default();
            let listed = find(&table, |fields| fields.get(2) == Some(&user))
                .and_then(|fields| fields.get(3)?.parse::<u32>().ok());
            (uid, listed.unwrap_or(uid))
        }
        Err(_) => {
            let table = passwd()?;
            let fields = find(&table, |fields| fields.first() == Some(&user))
                .ok_or_else(|| format!("user {user:?} is not in the container's /etc/passwd"))?;
            let number = |n: usize| fields.get(n).and_then(|f| f.parse::<u32>().ok());
            match (number(2), number(3)) {
                (Some(uid), Some(gid)) => (uid, gid),
                _ => return Err(format!("user {user:?}: a malformed /etc/passwd entry")),
            }
        }
    };
    let gid = match group {
        None => primary,
        Some(group) => match group.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => {
                let table = read_table(rootfs, "group", text)?;
                find(&table, |fields| fields.first() == Some(&group))
                    .and_then(|fields| fields.get(2)?.parse::<u32>().ok())
                    .ok_or_else(|| {
                        format!("group {group:?} is not in the container's /etc/group")
                    })?
            }
        },
    };
    let mut resolved = User::default();
    resolved.set_uid(uid).set_gid(gid);
    Ok(resolved)
}

/// The first line of a colon-separated table whose fields satisfy `wanted`.
fn find(table: &str, wanted: impl Fn(&[&str]) -> bool) -> Option<Vec<&str>> {
    table
        .lines()
        .map(|line| line.split(':').collect::<Vec<_>>())
        .find(|fields| wanted(fields))
}

/// `<rootfs>/etc/<name>`, read only when neither it nor `etc` is a link.
fn read_table(rootfs: Option<&Path>, name: &str, text: &str) -> Result<String, String> {
    let rootfs = rootfs
        .ok_or_else(|| format!("user {text:?}: names need the container's rootfs; give numbers"))?;
    let etc = rootfs.join("etc");
    let path = etc.join(name);
    for part in [&etc, &path] {
        let meta = std::fs::symlink_metadata(part)
            .map_err(|e| format!("user {text:?}: {}: {e}", part.display()))?;
        if meta.file_type().is_symlink() {
            return Err(format!(
                "user {text:?}: {} is a link: names are not looked up through it",
                part.display()
            ));
        }
    }
    use std::io::Read;
    let mut table = String::new();
    std::fs::File::open(&path)
        .and_then(|file| file.take(MAX_FILE).read_to_string(&mut table))
        .map_err(|e| format!("user {text:?}: {}: {e}", path.display()))?;
    Ok(table)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rootfs() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("etc")).unwrap();
        std::fs::write(
            dir.path().join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\nwww:x:33:34::/var/www:/bin/false\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("etc/group"),
            "root:x:0:\nweb:x:34:\nstaff:x:50:\n",
        )
        .unwrap();
        dir
    }

    fn ids(text: &str, rootfs: Option<&Path>) -> Result<(u32, u32), String> {
        resolve(text, rootfs).map(|user| (user.uid(), user.gid()))
    }

    #[test]
    fn names_come_from_the_containers_files() {
        let dir = rootfs();
        let root = Some(dir.path());
        assert_eq!(ids("www", root), Ok((33, 34)));
        assert_eq!(ids("www:staff", root), Ok((33, 50)));
        assert_eq!(
            ids("33", root),
            Ok((33, 34)),
            "a listed uid has its own group"
        );
        assert_eq!(ids("1000", root), Ok((1000, 1000)));
        assert_eq!(ids("1000:50", root), Ok((1000, 50)));
        assert_eq!(ids("root:web", root), Ok((0, 34)));
        assert!(ids("nobody", root).unwrap_err().contains("/etc/passwd"));
        assert!(ids("www:nogroup", root).unwrap_err().contains("/etc/group"));
        for bad in ["", ":1", "1:", "www::"] {
            assert!(ids(bad, root).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn numbers_need_no_rootfs_and_names_refuse_links() {
        assert_eq!(ids("7", None), Ok((7, 7)));
        assert!(ids("www", None).unwrap_err().contains("give numbers"));
        let dir = rootfs();
        std::fs::remove_file(dir.path().join("etc/passwd")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", dir.path().join("etc/passwd")).unwrap();
        assert!(ids("root", Some(dir.path()))
            .unwrap_err()
            .contains("is a link"));
    }
}

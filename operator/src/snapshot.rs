//! What a backup Job runs after `etcdctl snapshot save` (`hostplane-operator snapshot-finish`):
//! checks the snapshot etcd streamed (the SHA-256 of its content that etcd appends), writes its
//! metadata beside it (which tenant it is of), puts it in place under its final name and removes
//! the oldest beyond `retain`. The Job's termination message is the JSON of the snapshot, which
//! the operator copies into `status.backup.lastSnapshot`.
//!
//! On the volume: `<name>.db` (what `etcdutl snapshot restore` reads) and `<name>.json` (this
//! module's [`Metadata`]); `<name>.db.saving` while etcdctl writes it.

use std::fs;
use std::io::Read as _;
use std::path::{Path, PathBuf};

use hostplane_api::v1alpha1::Snapshot;
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// The suffix of a snapshot being saved (etcdctl writes here; renamed once checked).
pub const SAVING_SUFFIX: &str = ".db.saving";

#[derive(Debug, Error)]
pub enum SnapshotError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "snapshot {0} is not a whole etcd snapshot ({1} bytes: etcd's snapshots are pages of 512 \
         bytes and a 32-byte SHA-256); it was removed, nothing else changed"
    )]
    Truncated(String, u64),
    #[error(
        "snapshot {0} is corrupt: the SHA-256 etcd appended does not match its content; it was \
         removed, nothing else changed"
    )]
    Corrupt(String),
    #[error("encoding the metadata: {0}")]
    Encode(#[from] serde_json::Error),
    #[error("{0:?} is not the name of a snapshot file (<name>.db, no directory)")]
    BadName(String),
    #[error(
        "there is no snapshot {name} on the backup volume; there are: {}",
        if available.is_empty() { "none".to_owned() } else { available.join(", ") }
    )]
    NotFound {
        name: String,
        available: Vec<String>,
    },
    #[error(
        "snapshot {name} has no readable metadata ({why}): it was not taken by Hostplane's \
         backup, so whose it is cannot be checked"
    )]
    NoMetadata { name: String, why: String },
    #[error(
        "snapshot {name} is of another tenant ({tenant}, uid {uid}), not of this one: refused, \
         nothing changed"
    )]
    OtherTenant {
        name: String,
        tenant: String,
        uid: String,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SnapshotError + '_ {
    move |source| SnapshotError::Io {
        path: path.to_owned(),
        source,
    }
}

/// What `<name>.json` says of a snapshot: whose it is, and what it is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Metadata {
    /// `<namespace>/<name>` of the TenantControlPlane.
    pub tenant: String,
    /// Its uid: a TenantControlPlane of the same name made later is another tenant.
    pub uid: String,
    #[serde(flatten)]
    pub snapshot: Snapshot,
}

/// The SHA-256 etcd appended to a snapshot, checked against its content: `Ok(hex)` when they
/// agree. etcd's snapshot is its bbolt file (whole 512-byte pages) followed by 32 bytes.
pub fn verify(path: &Path, name: &str) -> Result<(u64, String), SnapshotError> {
    let mut file = fs::File::open(path).map_err(io(path))?;
    let size = file.metadata().map_err(io(path))?.len();
    if size < 512 + 32 || size % 512 != 32 {
        return Err(SnapshotError::Truncated(name.to_owned(), size));
    }
    let mut context = ring::digest::Context::new(&ring::digest::SHA256);
    let mut left = size - 32;
    let mut buffer = vec![0u8; 1 << 20];
    while left > 0 {
        let want = usize::try_from(left.min(buffer.len() as u64)).unwrap_or(buffer.len());
        let chunk = buffer.get_mut(..want).unwrap_or_default();
        file.read_exact(chunk).map_err(io(path))?;
        context.update(chunk);
        left -= want as u64;
    }
    let mut trailer = [0u8; 32];
    file.read_exact(&mut trailer).map_err(io(path))?;
    let digest = context.finish();
    if digest.as_ref() != trailer {
        return Err(SnapshotError::Corrupt(name.to_owned()));
    }
    Ok((size, hex(&trailer)))
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// The Job's step after etcdctl: checks `<dir>/<name>.db.saving`, writes `<name>.json`, renames
/// it to `<name>.db`, removes the oldest snapshots beyond `retain` and any left-over partial
/// one. A snapshot that fails the check is removed and nothing else is touched.
pub fn finish(
    dir: &Path,
    name: &str,
    tenant: &str,
    uid: &str,
    taken_at: &str,
    retain: usize,
) -> Result<Metadata, SnapshotError> {
    let saving = dir.join(format!("{name}{SAVING_SUFFIX}"));
    let (size_bytes, sha256) = match verify(&saving, name) {
        Ok(v) => v,
        Err(e) => {
            let _ = fs::remove_file(&saving);
            return Err(e);
        }
    };
    let metadata = Metadata {
        tenant: tenant.to_owned(),
        uid: uid.to_owned(),
        snapshot: Snapshot {
            name: format!("{name}.db"),
            size_bytes,
            taken_at: taken_at.to_owned(),
            sha256,
            uploaded_to: None,
        },
    };
    let json = dir.join(format!("{name}.json"));
    fs::write(&json, serde_json::to_vec_pretty(&metadata)?).map_err(io(&json))?;
    let db = dir.join(format!("{name}.db"));
    fs::rename(&saving, &db).map_err(io(&saving))?;
    prune(dir, retain)?;
    Ok(metadata)
}

/// Removes the oldest `<name>.db` (and their `.json`) beyond `retain`, by name (names carry the
/// time), and partial files of runs that did not finish.
fn prune(dir: &Path, retain: usize) -> Result<(), SnapshotError> {
    let mut snapshots = Vec::new();
    for entry in fs::read_dir(dir).map_err(io(dir))? {
        let entry = entry.map_err(io(dir))?;
        let file = entry.file_name().to_string_lossy().into_owned();
        if let Some(stem) = file.strip_suffix(".db") {
            snapshots.push(stem.to_owned());
        } else if file.contains(SAVING_SUFFIX) {
            let path = entry.path();
            fs::remove_file(&path).map_err(io(&path))?;
        }
    }
    snapshots.sort();
    let excess = snapshots.len().saturating_sub(retain.max(1));
    for stem in snapshots.iter().take(excess) {
        for ext in ["db", "json"] {
            let path = dir.join(format!("{stem}.{ext}"));
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io(&path)(e)),
            }
        }
    }
    Ok(())
}

/// Where an etcd member's data lives inside its volume (etcd's `--data-dir`), and where a
/// restore writes the new data before it takes its place.
pub const DATA: &str = "data";
pub const RESTORING: &str = "data.restoring";
/// The old data is kept aside as `data.before-restore-<stamp>` (the newest one only).
pub const BEFORE_RESTORE: &str = "data.before-restore-";

/// The restore Job's first step: `<dir>/<name>` must be a whole snapshot (its SHA-256 trailer)
/// of this tenant (its `.json` names `uid`); a half-written `data.restoring` of an earlier
/// attempt in `member` is removed. The member's data itself is not touched.
pub fn check_for_restore(
    dir: &Path,
    name: &str,
    uid: &str,
    member: &Path,
) -> Result<Metadata, SnapshotError> {
    let Some(stem) = name
        .strip_suffix(".db")
        .filter(|s| !s.is_empty() && !s.contains('/') && !s.starts_with('.'))
    else {
        return Err(SnapshotError::BadName(name.to_owned()));
    };
    let path = dir.join(name);
    if !path.is_file() {
        let mut available: Vec<String> = fs::read_dir(dir)
            .map_err(io(dir))?
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|f| Path::new(f).extension().is_some_and(|e| e == "db"))
            .collect();
        available.sort();
        return Err(SnapshotError::NotFound {
            name: name.to_owned(),
            available,
        });
    }
    let (_, sha256) = verify(&path, name)?;
    let json = dir.join(format!("{stem}.json"));
    let metadata: Metadata = fs::read(&json)
        .map_err(|e| e.to_string())
        .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
        .map_err(|why| SnapshotError::NoMetadata {
            name: name.to_owned(),
            why,
        })?;
    if metadata.snapshot.sha256 != sha256 {
        return Err(SnapshotError::Corrupt(name.to_owned()));
    }
    if metadata.uid != uid {
        return Err(SnapshotError::OtherTenant {
            name: name.to_owned(),
            tenant: metadata.tenant,
            uid: metadata.uid,
        });
    }
    let restoring = member.join(RESTORING);
    if restoring.exists() {
        fs::remove_dir_all(&restoring).map_err(io(&restoring))?;
    }
    Ok(metadata)
}

/// The swap Job's step, once every member's `data.restoring` is written: the member's `data`
/// goes aside as `data.before-restore-<stamp>` (replacing an older one) and `data.restoring`
/// takes its place. Two renames in one directory, and it can run again: after a stop between
/// the two it finishes the second; after both it changes nothing. Older copies are removed only
/// while `data` exists, so the only copy of the data is never removed.
pub fn swap(member: &Path, stamp: &str) -> Result<(), SnapshotError> {
    let restoring = member.join(RESTORING);
    let data = member.join(DATA);
    let aside = member.join(format!("{BEFORE_RESTORE}{stamp}"));
    if !restoring.exists() {
        // Done already (a second run), or etcdutl wrote nothing.
        return if data.exists() && aside.exists() {
            Ok(())
        } else {
            Err(io(&restoring)(std::io::ErrorKind::NotFound.into()))
        };
    }
    if data.exists() {
        for entry in fs::read_dir(member).map_err(io(member))? {
            let entry = entry.map_err(io(member))?;
            if entry
                .file_name()
                .to_string_lossy()
                .starts_with(BEFORE_RESTORE)
            {
                let path = entry.path();
                fs::remove_dir_all(&path).map_err(io(&path))?;
            }
        }
        fs::rename(&data, &aside).map_err(io(&data))?;
    }
    fs::rename(&restoring, &data).map_err(io(&restoring))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake etcd snapshot: `pages` pages of `fill`, then their SHA-256.
    fn snapshot(pages: usize, fill: u8) -> Vec<u8> {
        let mut bytes = vec![fill; pages * 512];
        let digest = ring::digest::digest(&ring::digest::SHA256, &bytes);
        bytes.extend_from_slice(digest.as_ref());
        bytes
    }

    fn scratch(test: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("hostplane-snapshot-{test}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn a_good_snapshot_is_kept_with_its_metadata_and_the_oldest_go() {
        let dir = scratch("good");
        for (i, name) in [
            "t-20261101-000000",
            "t-20261102-000000",
            "t-20261103-000000",
        ]
        .iter()
        .enumerate()
        {
            fs::write(
                dir.join(format!("{name}{SAVING_SUFFIX}")),
                snapshot(3 + i, 7),
            )
            .unwrap();
            let meta = finish(&dir, name, "ns/t", "uid-1", "2026-11-01T00:00:00Z", 2).unwrap();
            assert_eq!(meta.snapshot.name, format!("{name}.db"));
            assert_eq!(meta.snapshot.size_bytes, ((3 + i) * 512 + 32) as u64);
        }
        fs::write(
            dir.join(format!("t-20261099-000000{SAVING_SUFFIX}.part")),
            b"x",
        )
        .unwrap();
        fs::write(
            dir.join(format!("t-20261104-000000{SAVING_SUFFIX}")),
            snapshot(1, 1),
        )
        .unwrap();
        let meta = finish(&dir, "t-20261104-000000", "ns/t", "uid-1", "now", 2).unwrap();
        assert_eq!(
            names(&dir),
            [
                "t-20261103-000000.db",
                "t-20261103-000000.json",
                "t-20261104-000000.db",
                "t-20261104-000000.json"
            ]
        );
        let written: Metadata =
            serde_json::from_slice(&fs::read(dir.join("t-20261104-000000.json")).unwrap()).unwrap();
        assert_eq!(written, meta);
        assert_eq!(written.tenant, "ns/t");
        assert_eq!(
            written.snapshot.sha256,
            hex(ring::digest::digest(&ring::digest::SHA256, &[1u8; 512]).as_ref())
        );
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_restore_takes_only_a_whole_snapshot_of_this_tenant_and_keeps_the_old_data_aside() {
        let dir = scratch("restore");
        let member = dir.join("member");
        fs::create_dir_all(member.join(DATA)).unwrap();
        fs::write(member.join(DATA).join("old"), b"old").unwrap();
        fs::write(dir.join(format!("s1{SAVING_SUFFIX}")), snapshot(2, 9)).unwrap();
        finish(&dir, "s1", "ns/t", "uid-1", "then", 5).unwrap();

        let refused =
            |name: &str, uid: &str| check_for_restore(&dir, name, uid, &member).unwrap_err();
        assert!(matches!(
            refused("../s1.db", "uid-1"),
            SnapshotError::BadName(_)
        ));
        assert_eq!(
            refused("s0.db", "uid-1").to_string(),
            "there is no snapshot s0.db on the backup volume; there are: s1.db"
        );
        assert!(matches!(
            refused("s1.db", "uid-2"),
            SnapshotError::OtherTenant { .. }
        ));
        // Not taken by our backup: no metadata.
        fs::write(dir.join("foreign.db"), snapshot(1, 1)).unwrap();
        assert!(matches!(
            refused("foreign.db", "uid-1"),
            SnapshotError::NoMetadata { .. }
        ));
        // Corrupt on the volume since it was taken.
        let mut bytes = fs::read(dir.join("s1.db")).unwrap();
        bytes[0] ^= 1;
        fs::write(dir.join("s2.db"), &bytes).unwrap();
        fs::copy(dir.join("s1.json"), dir.join("s2.json")).unwrap();
        assert!(matches!(
            refused("s2.db", "uid-1"),
            SnapshotError::Corrupt(_)
        ));
        // A whole snapshot beside another one's metadata.
        fs::write(dir.join("s3.db"), snapshot(1, 4)).unwrap();
        fs::copy(dir.join("s1.json"), dir.join("s3.json")).unwrap();
        assert!(matches!(
            refused("s3.db", "uid-1"),
            SnapshotError::Corrupt(_)
        ));
        // Nothing of the member changed.
        assert_eq!(names(&member), [DATA]);

        fs::create_dir_all(member.join(RESTORING)).unwrap();
        fs::write(member.join(RESTORING).join("half"), b"x").unwrap();
        check_for_restore(&dir, "s1.db", "uid-1", &member).unwrap();
        assert_eq!(names(&member), [DATA], "a half-written restore is cleared");

        // etcdutl would write data.restoring here.
        fs::create_dir_all(member.join(RESTORING)).unwrap();
        fs::write(member.join(RESTORING).join("new"), b"new").unwrap();
        swap(&member, "1").unwrap();
        assert_eq!(fs::read(member.join(DATA).join("new")).unwrap(), b"new");
        assert_eq!(
            fs::read(member.join("data.before-restore-1").join("old")).unwrap(),
            b"old"
        );
        // A second restore keeps only the newest old data.
        fs::create_dir_all(member.join(RESTORING)).unwrap();
        swap(&member, "2").unwrap();
        assert_eq!(names(&member), [DATA, "data.before-restore-2"]);
        // Run again: nothing changes. No data.restoring (etcdutl failed): nothing moves.
        swap(&member, "2").unwrap();
        assert!(swap(&member, "3").is_err());
        assert_eq!(names(&member), [DATA, "data.before-restore-2"]);
        // Stopped between the two renames: a second run finishes, keeping the old data aside.
        fs::rename(member.join(DATA), member.join("data.before-restore-4")).unwrap();
        fs::create_dir_all(member.join(RESTORING)).unwrap();
        swap(&member, "4").unwrap();
        assert_eq!(
            names(&member),
            [DATA, "data.before-restore-2", "data.before-restore-4"]
        );
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_corrupt_or_truncated_snapshot_is_removed_and_nothing_else_is_touched() {
        let dir = scratch("bad");
        fs::write(dir.join(format!("old{SAVING_SUFFIX}")), snapshot(2, 3)).unwrap();
        finish(&dir, "old", "ns/t", "u", "then", 1).unwrap();

        let mut flipped = snapshot(2, 3);
        flipped[100] ^= 1;
        fs::write(dir.join(format!("new{SAVING_SUFFIX}")), flipped).unwrap();
        let err = finish(&dir, "new", "ns/t", "u", "now", 1).unwrap_err();
        assert!(matches!(err, SnapshotError::Corrupt(_)), "{err}");

        let mut short = snapshot(2, 3);
        short.truncate(700);
        fs::write(dir.join(format!("new{SAVING_SUFFIX}")), short).unwrap();
        let err = finish(&dir, "new", "ns/t", "u", "now", 1).unwrap_err();
        assert!(matches!(err, SnapshotError::Truncated(_, 700)), "{err}");

        let err = finish(&dir, "missing", "ns/t", "u", "now", 1).unwrap_err();
        assert!(matches!(err, SnapshotError::Io { .. }), "{err}");
        // The good one is still there, alone.
        assert_eq!(names(&dir), ["old.db", "old.json"]);
        fs::remove_dir_all(&dir).unwrap();
    }
}

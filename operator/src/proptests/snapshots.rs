//! Snapshots on the backup volume: their metadata read back from whatever bytes a `.json` holds,
//! the SHA-256 trailer check of files of any size and content, and the restore check of any file
//! name and metadata. Errors, never a panic; a restore goes ahead only for a whole snapshot whose
//! metadata names it (its SHA-256) and this tenant.

use std::fs;
use std::path::{Path, PathBuf};

use hostplane_api::v1alpha1::Snapshot;
use proptest::prelude::*;
use proptest::test_runner::TestRunner;

use super::strategies::{config, text};
use crate::snapshot::{Metadata, SnapshotError, check_for_restore, hex, verify};

/// `pages` pages of `fill` and their SHA-256, as etcd writes a snapshot.
fn snapshot_bytes(pages: usize, fill: u8) -> Vec<u8> {
    let mut bytes = vec![fill; pages * 512];
    let digest = ring::digest::digest(&ring::digest::SHA256, &bytes);
    bytes.extend_from_slice(digest.as_ref());
    bytes
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex(ring::digest::digest(&ring::digest::SHA256, bytes).as_ref())
}

/// A new scratch directory of this process for `test` (removed by the test when it is done)
/// holding `good.db` (tenant uid `uid-1`) and its metadata.
fn scratch(test: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("hostplane-proptest-{test}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    let bytes = snapshot_bytes(2, 5);
    fs::write(dir.join("good.db"), &bytes).unwrap();
    let metadata = Metadata {
        tenant: "ns/t".into(),
        uid: "uid-1".into(),
        snapshot: Snapshot {
            name: "good.db".into(),
            size_bytes: bytes.len() as u64,
            taken_at: "2026-11-23T12:00:00Z".into(),
            sha256: sha256_hex(&bytes[..bytes.len() - 32]),
            uploaded_to: None,
        },
    };
    fs::write(
        dir.join("good.json"),
        serde_json::to_vec(&metadata).unwrap(),
    )
    .unwrap();
    dir
}

/// Runs `property` on `strategy` in a scratch directory, which is removed afterwards; a failure
/// shows the minimal input.
fn on_volume<S: Strategy>(
    test: &str,
    cases: u32,
    strategy: &S,
    property: impl Fn(&Path, S::Value) -> Result<(), TestCaseError>,
) {
    let dir = scratch(test);
    let result = TestRunner::new(config(cases)).run(strategy, |value| property(&dir, value));
    let _ = fs::remove_dir_all(&dir);
    if let Err(e) = result {
        panic!("{e}");
    }
}

fn metadata() -> impl Strategy<Value = Metadata> {
    (
        text(0, 40, true),
        text(0, 40, true),
        text(0, 40, true),
        any::<u64>(),
        text(0, 30, true),
        "[0-9a-f]{64}|\\PC{0,70}",
    )
        .prop_map(
            |(tenant, uid, name, size_bytes, taken_at, sha256)| Metadata {
                tenant,
                uid,
                snapshot: Snapshot {
                    name,
                    size_bytes,
                    taken_at,
                    sha256,
                    uploaded_to: None,
                },
            },
        )
}

/// What a `.json` beside a snapshot may hold: metadata (right or wrong), JSON of another shape,
/// cut-off JSON, or bytes.
#[derive(Clone, Debug)]
enum Json {
    Metadata(Metadata),
    Truncated(Metadata, usize),
    Other(String),
    Bytes(Vec<u8>),
}

fn json() -> impl Strategy<Value = Json> {
    prop_oneof![
        3 => metadata().prop_map(Json::Metadata),
        1 => (metadata(), any::<usize>()).prop_map(|(m, at)| Json::Truncated(m, at)),
        1 => prop_oneof![
            Just("{}".to_owned()),
            Just("null".to_owned()),
            Just("[1, 2]".to_owned()),
            Just(r#"{"tenant": 1, "uid": [], "sizeBytes": -1}"#.to_owned()),
            // A size beyond u64.
            Just(
                r#"{"tenant":"a","uid":"b","name":"c","sizeBytes":18446744073709551616,"#
                    .to_owned()
                    + r#""takenAt":"","sha256":""}"#
            ),
            "[{}\\[\\]\",:0-9a-z ]{0,40}",
        ]
        .prop_map(Json::Other),
        1 => prop::collection::vec(any::<u8>(), 0..200).prop_map(Json::Bytes),
    ]
}

fn json_bytes(json: &Json) -> Vec<u8> {
    match json {
        Json::Metadata(m) => serde_json::to_vec_pretty(m).unwrap(),
        Json::Truncated(m, at) => {
            let mut bytes = serde_json::to_vec(m).unwrap();
            bytes.truncate(at % bytes.len());
            bytes
        }
        Json::Other(s) => s.clone().into_bytes(),
        Json::Bytes(b) => b.clone(),
    }
}

/// A restore's snapshot name: the good one, others that exist or not, and names that try to
/// leave the volume or are no `.db` at all.
fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        2 => Just("good.db".to_owned()),
        1 => Just("probe.db".to_owned()),
        1 => prop::sample::select(vec![
            "../good.db", "/good.db", "good", ".db", "..db", "./good.db", "good.db/", "good.json",
            "sub/good.db", ".hidden.db", "good.db\0", "GOOD.DB", "good.db.saving", "",
        ])
        .prop_map(str::to_owned),
        1 => text(0, 40, true).prop_map(|s| format!("{s}.db")),
        1 => text(0, 40, true),
    ]
}

fn well_formed(name: &str) -> bool {
    name.strip_suffix(".db")
        .is_some_and(|s| !s.is_empty() && !s.contains('/') && !s.starts_with('.'))
}

proptest! {
    #![proptest_config(config(64))]

    /// Metadata round-trips through the JSON the backup Job writes, and any bytes in a `.json`
    /// read as metadata or as an error.
    #[test]
    fn metadata_round_trips_and_garbage_is_an_error(metadata in metadata(), json in json()) {
        let written = serde_json::to_vec_pretty(&metadata).unwrap();
        prop_assert_eq!(serde_json::from_slice::<Metadata>(&written).unwrap(), metadata);
        let bytes = json_bytes(&json);
        let read = serde_json::from_slice::<Metadata>(&bytes);
        if let Json::Metadata(m) = &json {
            prop_assert_eq!(read.as_ref().ok(), Some(m));
        }
        if matches!(json, Json::Truncated(..)) {
            prop_assert!(read.is_err());
        }
    }
}

/// Any file: whole (pages of 512 bytes and a 32-byte trailer) and matching its SHA-256, or an
/// error saying which; the size reported is the file's.
#[test]
fn verify_takes_exactly_whole_snapshots() {
    let files = (
        0usize..4,
        any::<u8>(),
        prop::option::of(0usize..2100),
        prop::collection::vec(any::<u8>(), 0..40),
        prop::option::of((any::<usize>(), 1u8..=255)),
    );
    on_volume(
        "verify",
        64,
        &files,
        |dir, (pages, fill, cut, extra, flip)| {
            let mut bytes = snapshot_bytes(pages, fill);
            if let Some(cut) = cut {
                bytes.truncate(cut);
            }
            bytes.extend_from_slice(&extra);
            if let Some((at, x)) = flip.filter(|_| !bytes.is_empty()) {
                let at = at % bytes.len();
                bytes[at] ^= x;
            }
            let path = dir.join("verify.db.saving");
            fs::write(&path, &bytes).unwrap();
            let result = verify(&path, "probe");
            fs::remove_file(&path).unwrap();
            let size = bytes.len();
            let whole = size >= 512 + 32 && size % 512 == 32;
            let matches = whole && sha256_hex(&bytes[..size - 32]) == hex(&bytes[size - 32..]);
            match result {
                Ok((reported, sha)) => {
                    prop_assert!(matches);
                    prop_assert_eq!(reported, size as u64);
                    prop_assert_eq!(sha, hex(&bytes[size - 32..]));
                }
                Err(SnapshotError::Truncated(_, reported)) => {
                    prop_assert!(!whole);
                    prop_assert_eq!(reported, size as u64);
                }
                Err(SnapshotError::Corrupt(_)) => prop_assert!(whole && !matches),
                Err(e) => return Err(TestCaseError::fail(e.to_string())),
            }
            Ok(())
        },
    );
}

/// The restore check of any name against a volume with one good snapshot (and a second one,
/// `probe.db`, beside metadata of any content): it passes only for a well-formed name of a
/// whole snapshot whose metadata is readable, carries its SHA-256 and names this tenant's
/// uid; the member's data is never touched.
#[test]
fn a_restore_goes_ahead_only_for_this_tenants_whole_snapshot() {
    let cases = (
        name(),
        prop_oneof![Just("uid-1".to_owned()), text(0, 12, true)],
        json(),
        any::<bool>(),
    );
    on_volume(
        "restore",
        64,
        &cases,
        |dir, (name, uid, probe_json, probe_sha_right)| {
            let probe = snapshot_bytes(1, 9);
            let mut probe_json = probe_json;
            if let Json::Metadata(m) = &mut probe_json
                && probe_sha_right
            {
                m.snapshot.sha256 = sha256_hex(&probe[..512]);
            }
            let member = dir.join(format!("member-{}", std::process::id()));
            fs::create_dir_all(member.join("data")).unwrap();
            fs::write(dir.join("probe.db"), &probe).unwrap();
            fs::write(dir.join("probe.json"), json_bytes(&probe_json)).unwrap();

            let result = check_for_restore(dir, &name, &uid, &member);

            let expected_meta: Option<Metadata> = match name.as_str() {
                "good.db" => serde_json::from_slice(&fs::read(dir.join("good.json")).unwrap()).ok(),
                "probe.db" => serde_json::from_slice(&json_bytes(&probe_json)).ok(),
                _ => None,
            };
            let whole_and_named = expected_meta.as_ref().is_some_and(|m| {
                let bytes = fs::read(dir.join(&name)).unwrap();
                m.snapshot.sha256 == sha256_hex(&bytes[..bytes.len() - 32])
            });
            let expected_ok = well_formed(&name)
                && whole_and_named
                && expected_meta.as_ref().is_some_and(|m| m.uid == uid);
            prop_assert_eq!(
                result.is_ok(),
                expected_ok,
                "{:?} for uid {:?}: {:?}",
                name,
                uid,
                result
            );
            match &result {
                Ok(m) => prop_assert_eq!(Some(m), expected_meta.as_ref()),
                Err(SnapshotError::BadName(n)) => {
                    prop_assert!(!well_formed(&name));
                    prop_assert_eq!(n, &name);
                }
                Err(SnapshotError::NotFound { available, .. }) => {
                    prop_assert!(!dir.join(&name).is_file());
                    prop_assert!(available.iter().any(|a| a == "good.db"), "{:?}", available);
                }
                Err(SnapshotError::NoMetadata { .. }) => prop_assert!(expected_meta.is_none()),
                Err(SnapshotError::Corrupt(_)) => {
                    prop_assert!(expected_meta.is_some() && !whole_and_named);
                }
                Err(SnapshotError::OtherTenant { uid: theirs, .. }) => {
                    prop_assert!(whole_and_named);
                    prop_assert_ne!(theirs, &uid);
                }
                Err(e) => return Err(TestCaseError::fail(e.to_string())),
            }
            let entries: Vec<_> = fs::read_dir(&member)
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            prop_assert_eq!(entries, vec![std::ffi::OsString::from("data")]);
            Ok(())
        },
    );
}

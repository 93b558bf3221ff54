//! A file-system entry as the files routes answer it: the agent's `EntryInfo` in the
//! API's JSON (camelCase, times in RFC 3339 as everywhere else).

use sandstream_proto::v1::{EntryInfo, FileType};
use serde::Serialize;
use utoipa::ToSchema;

use crate::time::rfc3339;

/// One entry of a sandbox's file system. A symlink is described, not followed.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Entry {
    /// The last component of `path`.
    pub name: String,
    /// Absolute, in the sandbox.
    pub path: String,
    #[serde(rename = "type")]
    pub kind: EntryType,
    /// Symlinks only: what the link points to, as written in it.
    pub symlink_target: Option<String>,
    /// Bytes (a directory's is what the file system says).
    pub size: u64,
    /// Permission bits with setuid, setgid and sticky (`mode & 0o7777`), as a number
    /// (`420` is `0644`).
    pub mode: u32,
    /// The owner's name in the sandbox, or its uid where it has none.
    pub owner: String,
    /// The group's name in the sandbox, or its gid.
    pub group: String,
    pub uid: u32,
    pub gid: u32,
    /// Last modification.
    #[schema(format = DateTime)]
    pub modified_at: String,
}

/// What an entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub(crate) enum EntryType {
    File,
    Dir,
    Symlink,
    /// A device, socket or FIFO.
    Other,
}

impl From<FileType> for EntryType {
    fn from(t: FileType) -> EntryType {
        match t {
            FileType::File => EntryType::File,
            FileType::Dir => EntryType::Dir,
            FileType::Symlink => EntryType::Symlink,
            FileType::Other | FileType::Unspecified => EntryType::Other,
        }
    }
}

/// `e` in the API's JSON.
pub(crate) fn entry_json(e: EntryInfo) -> Entry {
    let kind = EntryType::from(e.r#type());
    Entry {
        name: e.name,
        path: e.path,
        kind,
        symlink_target: (kind == EntryType::Symlink).then_some(e.symlink_target),
        size: e.size,
        mode: e.mode & 0o7777,
        owner: e.owner,
        group: e.group,
        uid: e.uid,
        gid: e.gid,
        modified_at: rfc3339(e.modified_at_ms),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_is_camel_case_json_with_an_iso_time() {
        let info = EntryInfo {
            name: "l".into(),
            path: "/home/user/l".into(),
            r#type: FileType::Symlink as i32,
            symlink_target: "/etc/shadow".into(),
            size: 11,
            mode: 0o100777,
            owner: "user".into(),
            group: "user".into(),
            modified_at_ms: 1_795_465_179_123,
            uid: 1000,
            gid: 1000,
        };
        let json = serde_json::to_value(entry_json(info)).expect("json");
        assert_eq!(
            json,
            serde_json::json!({"name": "l", "path": "/home/user/l", "type": "symlink", "symlinkTarget": "/etc/shadow",
                "size": 11, "mode": 0o777, "owner": "user", "group": "user", "uid": 1000, "gid": 1000,
                "modifiedAt": "2026-11-23T20:19:39.123Z"})
        );
        let file = EntryInfo { r#type: FileType::File as i32, symlink_target: "x".into(), ..EntryInfo::default() };
        let json = serde_json::to_value(entry_json(file)).expect("json");
        assert_eq!(json["type"], "file");
        assert_eq!(json["symlinkTarget"], serde_json::Value::Null);
        assert_eq!(json["modifiedAt"], "1970-01-01T00:00:00.000Z");
    }
}

//! Root filesystem templates: the built-in `default` one (`default.rs`, built by
//! mmdebstrap; `machine.rs` gives it its user, Node.js and a /usr/local the user owns),
//! and the ones users import by name from a directory or a tarball such as `docker
//! export` writes (`catalog.rs` keeps the names and versions, `extract.rs` writes the
//! files without ever writing outside the template).

mod catalog;
mod default;
mod extract;
mod machine;
pub(crate) mod mapped;
mod mounts;
mod shift;

use std::path::PathBuf;

pub use catalog::{
    DEFAULT_TEMPLATE, GcReport, ImportOptions, ImportReport, RemoveReport, TemplateInfo, TemplateLease,
    collect_template_garbage, import_template, is_valid_template_name, lease_template, list_templates, remove_template,
};
pub use default::{DEFAULT_PACKAGES, default_template_dir, default_template_name, ensure_default_template};

/// The file whose presence makes a template directory complete.
pub(crate) const READY_MARK: &str = ".sandstream-template";

/// Why a template could not be imported, found, listed or removed.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("template name {0:?} is not valid: use 1 to 64 letters, digits, `_` or `-`")]
    InvalidName(String),
    #[error("the template name `default` is reserved for the built-in template")]
    Reserved,
    #[error("template {0} already exists (replace it with --replace)")]
    Exists(String),
    #[error("template {name} does not exist; templates here: {available}")]
    NotFound { name: String, available: String },
    /// A member of the source that would write outside the template, or through a link.
    #[error("{origin}: refused member {member}: {reason}")]
    Unsafe { origin: String, member: String, reason: String },
    #[error("{origin} is not a usable sandbox root filesystem: {why}")]
    NotARootfs { origin: PathBuf, why: String },
    #[error("{origin}: {detail}")]
    Format { origin: PathBuf, detail: String },
    #[error("{context}: {source}")]
    Io { context: String, source: std::io::Error },
}

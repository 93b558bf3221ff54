//! Creates, limits, isolates and destroys sandboxes on one host, behind the [`Runtime`]
//! trait. **The only crate that touches namespaces, cgroups, mounts, iptables or runc.**
//! A sandbox is a container whose PID 1 is the static Sandstream agent; callers reach
//! it at the returned address with the returned token.

mod binds;
mod busy;
mod cgroupfs;
mod disk;
mod docker;
mod egress;
mod error;
mod host;
mod lockfile;
mod net;
mod netlink;
mod netns;
mod oci;
mod private_nets;
mod ready;
mod remove;
mod sandbox;
mod seccomp;
mod template;
mod types;
mod undo;
mod userns;

pub use docker::{DockerConfig, DockerRuntime};
pub use egress::{DEFAULT_MAX_FLOWS, MAX_FLOWS_LIMIT};
pub use error::{Error, Result};
pub use oci::{OciConfig, OciRuntime};
pub use template::{
    DEFAULT_PACKAGES, DEFAULT_TEMPLATE, GcReport, ImportOptions, ImportReport, RemoveReport, TemplateError,
    TemplateInfo, TemplateLease, collect_template_garbage, default_template_dir, default_template_name,
    ensure_default_template, import_template, is_valid_template_name, lease_template, list_templates, remove_template,
};
pub use types::{
    Cidr, DEFAULT_CPU_MILLIS, DEFAULT_DISK_MB, DEFAULT_MEMORY_MB, DEFAULT_PIDS, DISK_INODES_PER_MB, Egress, Limits,
    MIN_DISK_MB, PTYS_PER_SANDBOX, Runtime, Sandbox, SandboxSpec, is_env_name,
};
pub use userns::{MAPPED_ACCOUNT, MAPPED_IDS, MappedIds, ensure_mapped_ids, mapped_ids};

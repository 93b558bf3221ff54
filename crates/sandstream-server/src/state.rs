//! The states a sandbox and an execution go through, as closed enums. They are strings
//! only at the edges: in SQL (`ToSql`/`FromSql`) and in JSON (`Serialize`), both in
//! lowercase, as API.md names them.

use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSql, ToSqlOutput, ValueRef};

/// Defines a closed enum whose every variant has one lowercase name, used in JSON and
/// SQL alike, with its conversions.
macro_rules! named_states {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident => $text:literal,)+ }) => {
        $(#[$doc])*
        // `rename_all` for utoipa, which cannot read the `rename` of a macro's literal;
        // a test checks that the document names the same strings (`ALL`).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
        #[serde(rename_all = "lowercase")]
        pub(crate) enum $name {
            $($(#[$vdoc])* #[serde(rename = $text)] $variant,)+
        }

        impl $name {
            pub(crate) const ALL: &'static [$name] = &[$($name::$variant),+];

            pub(crate) fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }

            pub(crate) fn parse(text: &str) -> Option<$name> {
                Self::ALL.iter().copied().find(|s| s.as_str() == text)
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl ToSql for $name {
            fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
                Ok(ToSqlOutput::from(self.as_str()))
            }
        }

        impl FromSql for $name {
            fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
                let text = value.as_str()?;
                $name::parse(text).ok_or_else(|| {
                    FromSqlError::Other(format!("{text:?} is not a {}", stringify!($name)).into())
                })
            }
        }
    };
}

named_states! {
    /// Where a sandbox is.
    SandboxState {
        /// Its runner reports it.
        Running => "running",
        /// Its runner went silent; it may come back.
        Lost => "lost",
        /// Killed, expired, or found dead: for good.
        Killed => "killed",
    }
}

named_states! {
    /// How an execution stands: running, or how it ended.
    ExecStatus {
        Running => "running",
        /// The program exited 0.
        Success => "success",
        /// It exited non-zero, its install failed, its output reached the limit, or
        /// the server could not run it.
        Error => "error",
        /// It reached its timeout and was killed.
        Timeout => "timeout",
        /// Stopped by a cancel.
        Cancelled => "cancelled",
    }
}

named_states! {
    /// Where an execution is: writing its files, installing its dependencies, running.
    Phase {
        Prepare => "prepare",
        Install => "install",
        Run => "run",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_state_has_one_name_in_json_and_sql() {
        for s in ExecStatus::ALL {
            assert_eq!(ExecStatus::parse(s.as_str()), Some(*s));
            assert_eq!(serde_json::to_value(s).expect("json"), serde_json::json!(s.as_str()));
        }
        for s in SandboxState::ALL {
            assert_eq!(SandboxState::parse(s.as_str()), Some(*s));
        }
        for p in Phase::ALL {
            assert_eq!(Phase::parse(p.as_str()), Some(*p));
        }
        assert_eq!(ExecStatus::parse("done"), None);
        let db = rusqlite::Connection::open_in_memory().expect("db");
        let back: Phase = db.query_row("SELECT ?1", [Phase::Install], |r| r.get(0)).expect("round trip");
        assert_eq!(back, Phase::Install);
        let bad = db.query_row("SELECT 'sleeping'", [], |r| r.get::<_, SandboxState>(0));
        assert!(bad.is_err(), "an unknown state is an error, not a default");
    }
}
